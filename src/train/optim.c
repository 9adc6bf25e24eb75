/* optim — the update after each step's backward (train contract): global-norm
 * gradient clipping, AdamW with torch.optim.AdamW's semantics (decoupled
 * weight decay on ≥2-D tensors, bias-corrected moments), the warmup + cosine
 * learning rate, and DeepSeek-V3's auxiliary-loss-free balancing (each
 * expert's correction bias nudged toward the mean load). Parameters a stage
 * does not train are left exactly as they are. */
#include "train/train_internal.h"

#include <math.h>
#include <string.h>

double t_lr_at(const dm_train_hparams *hp, int step)
{
    if (step < hp->warmup)
        return hp->lr * (step + 1) / hp->warmup;
    const double lo = hp->lr * hp->min_lr_ratio;
    const int span = hp->steps - hp->warmup > 1 ? hp->steps - hp->warmup : 1;
    const double progress = (double)(step - hp->warmup) / span;
    return lo + 0.5 * (hp->lr - lo) * (1.0 + cos(M_PI * (progress > 1 ? 1 : progress)));
}

double t_grad_norm(const t_params *ps, dm_stage_mode mode)
{
    double sum = 0;
    for (int i = 0; i < ps->n; i++) {
        if (!t_param_trains(&ps->p[i], mode))
            continue;
        const float *g = ps->g + ps->p[i].off;
        double s = 0;
        for (size_t j = 0; j < ps->p[i].n; j++)
            s += (double)g[j] * g[j];
        sum += s;
    }
    return sqrt(sum);
}

void t_adamw(t_params *ps, const dm_train_hparams *hp, dm_stage_mode mode, double lr, double grad_norm)
{
    const double clip = hp->clip > 0 && grad_norm > hp->clip ? hp->clip / (grad_norm + 1e-6) : 1.0;
    const double b1 = hp->beta1, b2 = hp->beta2;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < ps->n; i++) {
        t_param *p = &ps->p[i];
        if (!t_param_trains(p, mode))
            continue;
        p->t++;
        const double wd = p->spec.cols > 0 ? hp->weight_decay : 0.0;
        const double c1 = 1.0 - pow(b1, (double)p->t), c2 = 1.0 - pow(b2, (double)p->t);
        float *w = ps->w + p->off, *m = ps->m + p->off, *v = ps->v + p->off;
        const float *g = ps->g + p->off;
        for (size_t j = 0; j < p->n; j++) {
            const double gj = g[j] * clip;
            double wj = w[j] * (1.0 - lr * wd);
            m[j] = (float)(b1 * m[j] + (1.0 - b1) * gj);
            v[j] = (float)(b2 * v[j] + (1.0 - b2) * gj * gj);
            wj -= lr * (m[j] / c1) / (sqrt(v[j] / c2) + hp->eps);
            w[j] = (float)wj;
        }
    }
}

void t_update_router_bias(t_model *tm)
{
    const dm_config *c = tm->c;
    const int Emax = c->n_routed_experts;
    for (int l = 0; l < dm_config_total_layers(c); l++) {
        if (!c->layer_moe[l])
            continue;
        const int E = c->layer_experts[l];
        const int64_t *load = tm->load + (size_t)l * Emax;
        double mean = 0;
        for (int e = 0; e < E; e++)
            mean += (double)load[e];
        mean /= E;
        float *bias = tm->w.layers[l].bias;
        for (int e = 0; e < E; e++) {
            const double d = mean - (double)load[e];
            bias[e] += (float)(tm->hp->bias_update_rate * (d > 0 ? 1 : d < 0 ? -1 : 0));
        }
    }
}
