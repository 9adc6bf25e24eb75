/* router — which experts a token goes to, and with what weight
 * (arch.md §4.2; HF GlmMoeDsaMoE.route_tokens_to_experts, DeepSeek Gate):
 *
 *   s      = sigmoid(logits)  (or softmax)        the "original" scores
 *   sel    = s + e_score_correction_bias          used ONLY to choose experts
 *   groups : n_group > 1 keeps the topk_group best groups (group score = sum of
 *            its top-2 sel for noaux_tc, max for group_limited_greedy)
 *   idx    = top-K of sel (ties to the lower expert id)
 *   gates  = s[idx], renormalized to sum 1 if norm_topk_prob (+1e-20 as HF),
 *            then × routed_scaling_factor.
 *
 * This file is also where REAP's "true gate" comes from: calibration reads
 * the gates computed here through the MoE observer. */
#include "model/forward_internal.h"

#include <math.h>

dm_router_params dm_router_params_for(const dm_config *c, int layer)
{
    dm_router_params p = {
        .E = c->layer_experts[layer], .K = c->n_experts_per_tok,
        .n_group = c->n_group, .topk_group = c->topk_group,
        .scoring = c->scoring, .method = c->topk_method,
        .norm_topk_prob = c->norm_topk_prob, .scaling = c->routed_scaling_factor,
    };
    return p;
}

static void score(const dm_router_params *p, const float *logits, float *scores)
{
    if (p->scoring == DM_SCORING_SIGMOID) {
        for (int e = 0; e < p->E; e++)
            scores[e] = p->keep && !p->keep[e] ? 0.0f : dm_sigmoid(logits[e]);
    } else {
        for (int e = 0; e < p->E; e++)
            scores[e] = p->keep && !p->keep[e] ? -INFINITY : logits[e];
        dm_softmax(scores, p->E);
    }
}

/* Masks (to -inf) the experts of every group outside the topk_group best. */
static void limit_groups(const dm_router_params *p, float *sel, float *group_score)
{
    const int per = p->E / p->n_group;
    for (int g = 0; g < p->n_group; g++) {
        const float *s = sel + (size_t)g * per;
        float best = -INFINITY, second = -INFINITY;
        for (int j = 0; j < per; j++) {
            if (s[j] > best) {
                second = best;
                best = s[j];
            } else if (s[j] > second) {
                second = s[j];
            }
        }
        group_score[g] = p->method == DM_TOPK_NOAUX_TC ? best + second : best;
    }
    int keep[p->n_group];
    dm_topk(group_score, p->n_group, p->topk_group, keep);
    bool kept[p->n_group];
    for (int g = 0; g < p->n_group; g++)
        kept[g] = false;
    for (int i = 0; i < p->topk_group; i++)
        kept[keep[i]] = true;
    for (int g = 0; g < p->n_group; g++)
        if (!kept[g])
            for (int j = 0; j < per; j++)
                sel[(size_t)g * per + j] = -INFINITY;
}

void dm_route_token(const dm_router_params *p, const float *logits, const float *bias, float *scores, int *sel,
                    float *gates, float *tmp)
{
    float *biased = tmp, *group_score = tmp + p->E;
    score(p, logits, scores);
    for (int e = 0; e < p->E; e++)
        biased[e] = p->keep && !p->keep[e] ? -INFINITY : bias ? scores[e] + bias[e] : scores[e];
    if (p->n_group > 1 && p->method != DM_TOPK_GREEDY)
        limit_groups(p, biased, group_score);
    dm_topk(biased, p->E, p->K, sel);
    double sum = 0;
    for (int k = 0; k < p->K; k++) {
        gates[k] = scores[sel[k]];
        sum += gates[k];
    }
    if (p->norm_topk_prob) {
        float denom = (float)sum + 1e-20f;
        for (int k = 0; k < p->K; k++)
            gates[k] /= denom;
    }
    for (int k = 0; k < p->K; k++)
        gates[k] *= p->scaling;
}
