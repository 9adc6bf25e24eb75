/* cmd_eval_report — `demolish eval report RUN.jsonl... --out report.md`: a
 * markdown table of `eval loops` runs (every rate with its Wilson 95%
 * interval, distinct-4, length quantiles; then per source) and, beside it,
 * an SVG bar chart of the loop, fail and runaway rates with interval
 * whiskers (report.md -> report.svg), drawn by hand: bars are rectangles on
 * a linear 0..ymax axis, whiskers are lines from lo to hi. */
#include "cli/cli.h"
#include "cli/loops_run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RUNS 64

/* Columns of the markdown table, by metric name. */
static const char *const md_rates[] = { "loop", "fail", "runaway", "eos", "think_closed", "think_restart" };
#define N_MD (sizeof md_rates / sizeof md_rates[0])
/* Bars of the chart and their colours. */
static const char *const bar_rates[] = { "loop", "fail", "runaway" };
static const char *const bar_colors[] = { "#d62728", "#1f77b4", "#ff7f0e" };
#define N_BARS (sizeof bar_rates / sizeof bar_rates[0])

/* rate, lo, hi of a metric in [0, 1]; false when it has no denominator. */
static bool rate_ci(const dm_loop_counts *c, const char *name, double *r, double *lo, double *hi)
{
    const loops_metric *mt = loops_metric_named(name);
    const int64_t k = loops_metric_k(mt, c), n = loops_metric_n(mt, c);
    if (n == 0)
        return false;
    *r = (double)k / (double)n;
    dm_wilson(k, n, DM_Z95, lo, hi);
    return true;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void md_row(FILE *f, const char *name, const dm_loop_counts *c)
{
    fprintf(f, "| %s | %lld |", name, (long long)c->n);
    for (size_t i = 0; i < N_MD; i++) {
        double r, lo, hi;
        if (rate_ci(c, md_rates[i], &r, &lo, &hi))
            fprintf(f, " %.1f%% [%.1f, %.1f] |", 100 * r, 100 * lo, 100 * hi);
        else
            fprintf(f, " – |");
    }
    fprintf(f, " %.4f | %.1f | %.1f |\n", dm_loop_counts_d4_mean(c), c->len_median, c->len_p90);
}

static void md_head(FILE *f, const char *first)
{
    fprintf(f, "| %s | n |", first);
    for (size_t i = 0; i < N_MD; i++)
        fprintf(f, " %s [95%% CI] |", md_rates[i]);
    fprintf(f, " distinct-4 | len median | len p90 |\n|---|---:|");
    for (size_t i = 0; i < N_MD; i++)
        fprintf(f, "---:|");
    fprintf(f, "---:|---:|---:|\n");
}

static char *markdown(const loops_run *runs, const dm_loop_agg *aggs, int n, const char *svg_name)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "# Loop-rate evaluation\n\nRates over generations with Wilson 95%% intervals (think_* over generations "
               "whose tokenizer has `</think>`). Detector definitions: README, \"Loop-rate evaluation\".\n\n");
    md_head(f, "run");
    for (int r = 0; r < n; r++)
        md_row(f, base_name(runs[r].path), &aggs[r].total);
    fprintf(f, "\n| run | model hash | sampler | seed | max tokens |\n|---|---|---|---:|---:|\n");
    for (int r = 0; r < n; r++)
        fprintf(f, "| %s | `%.12s` | `%s` | %llu | %d |\n", base_name(runs[r].path), runs[r].h.model_hash,
                runs[r].h.sampler, (unsigned long long)runs[r].h.seed, runs[r].h.max_tokens);
    for (int r = 0; r < n; r++) {
        if (!aggs[r].n_groups)
            continue;
        fprintf(f, "\n## %s by source\n\n", base_name(runs[r].path));
        md_head(f, "source");
        for (int g = 0; g < aggs[r].n_groups; g++)
            md_row(f, aggs[r].group[g], &aggs[r].groups[g]);
    }
    fprintf(f, "\n![loop, fail and runaway rates with 95%% intervals](%s)\n", svg_name);
    fclose(f);
    return buf;
}

/* ---- the chart ----------------------------------------------------------------- */

#define SVG_LEFT 60
#define SVG_TOP 30
#define SVG_PLOT_H 260
#define SVG_BAR_W 22
#define SVG_GROUP_GAP 40

/* A round axis maximum (in %) above every whisker: 1, 2 or 5 times a power of ten. */
static double axis_max(double top_pct)
{
    if (top_pct <= 0)
        return 1;
    static const double steps[] = { 1, 2, 5, 10 };
    const double p = pow(10, floor(log10(top_pct)));
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (steps[i] * p >= top_pct)
            return steps[i] * p;
    return 10 * p;
}

/* s XML-escaped, at most max bytes of it (run labels must fit under their bars). */
static void xml_text(FILE *f, const char *s, size_t max)
{
    for (const char *end = s + strnlen(s, max); s < end; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

static char *svg(const loops_run *runs, const dm_loop_agg *aggs, int n)
{
    double top = 0, r, lo, hi;
    for (int k = 0; k < n; k++)
        for (size_t b = 0; b < N_BARS; b++)
            if (rate_ci(&aggs[k].total, bar_rates[b], &r, &lo, &hi))
                top = fmax(top, 100 * hi);
    const double ymax = axis_max(top);
    const int group_w = (int)N_BARS * SVG_BAR_W + SVG_GROUP_GAP;
    const int W = SVG_LEFT + n * group_w + 20, H = SVG_TOP + SVG_PLOT_H + 70;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"13\">rate (%%) with Wilson 95%% intervals</text>\n", SVG_LEFT);
    for (int t = 0; t <= 5; t++) {   /* y grid and ticks */
        const double v = ymax * t / 5, y = SVG_TOP + SVG_PLOT_H * (1 - (double)t / 5);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", SVG_LEFT, y, W - 10, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", SVG_LEFT - 6, y + 4, v);
    }
    for (int k = 0; k < n; k++) {
        const int x0 = SVG_LEFT + k * group_w + SVG_GROUP_GAP / 2;
        for (size_t b = 0; b < N_BARS; b++) {
            if (!rate_ci(&aggs[k].total, bar_rates[b], &r, &lo, &hi))
                continue;
            const double x = x0 + (double)b * SVG_BAR_W, yv = SVG_TOP + SVG_PLOT_H * (1 - 100 * r / ymax);
            const double ylo = SVG_TOP + SVG_PLOT_H * (1 - 100 * lo / ymax), yhi = SVG_TOP + SVG_PLOT_H * (1 - 100 * hi / ymax);
            const double xc = x + SVG_BAR_W / 2.0;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"><title>%s %.2f%% [%.2f, %.2f]"
                       "</title></rect>\n", x + 2, yv, SVG_BAR_W - 4, SVG_TOP + SVG_PLOT_H - yv, bar_colors[b],
                    bar_rates[b], 100 * r, 100 * lo, 100 * hi);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", xc, ylo, xc, yhi);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", xc - 4, ylo, xc + 4, ylo);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", xc - 4, yhi, xc + 4, yhi);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", x0 + N_BARS * SVG_BAR_W / 2.0,
                SVG_TOP + SVG_PLOT_H + 16);
        xml_text(f, base_name(runs[k].path), 16);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", SVG_LEFT, SVG_TOP + SVG_PLOT_H, W - 10,
            SVG_TOP + SVG_PLOT_H);
    for (size_t b = 0; b < N_BARS; b++) {   /* legend */
        const int lx = SVG_LEFT + (int)b * 90, ly = SVG_TOP + SVG_PLOT_H + 40;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                lx, ly, bar_colors[b], lx + 16, ly + 10, bar_rates[b]);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
    return buf;
}

/* report.md -> report.svg; any other name gets ".svg" appended. */
static char *svg_path(const char *md)
{
    const size_t n = strlen(md);
    if (n > 3 && !strcmp(md + n - 3, ".md"))
        return dm_asprintf("%.*s.svg", (int)(n - 3), md);
    return dm_asprintf("%s.svg", md);
}

int cmd_eval_report(int argc, char **argv)
{
    const char *out = NULL;
    bool json = false;
    const cli_opt opts[] = {
        { "--out", "-o", CLI_STR, &out, "FILE", "markdown report (the SVG chart goes beside it: .md -> .svg)" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "also print every run's rates as JSON" },
    };
    const cli_spec spec = { "eval report", "RUN.jsonl...", "Writes a markdown table and an SVG chart of eval loops runs.",
                            opts, 2, 1, MAX_RUNS };
    const char *pos[MAX_RUNS];
    int n, rc = cli_parse(&spec, argc, argv, pos, &n);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!out)
        return fprintf(stderr, "demolish eval report: --out is required\n"), DM_EXIT_USAGE;
    loops_run runs[MAX_RUNS];
    dm_loop_agg aggs[MAX_RUNS];
    memset(runs, 0, sizeof runs);
    for (int i = 0; i < MAX_RUNS; i++)
        dm_loop_agg_init(&aggs[i]);
    dm_err err;
    char *sp = svg_path(out), *md = NULL, *sv = NULL;
    rc = DM_EXIT_OK;
    for (int i = 0; i < n && rc == DM_EXIT_OK; i++)
        if (loops_run_read(pos[i], &runs[i], &err) || loops_run_agg(&runs[i], &aggs[i], &err))
            rc = cli_fail(&err);
    if (rc == DM_EXIT_OK) {
        md = markdown(runs, aggs, n, base_name(sp));
        sv = svg(runs, aggs, n);
        if (dm_write_file_atomic(out, md, strlen(md), &err) || dm_write_file_atomic(sp, sv, strlen(sv), &err))
            rc = cli_fail(&err);
    }
    if (rc == DM_EXIT_OK && json) {
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "runs");
        cJSON_AddStringToObject(o, "markdown", out);
        cJSON_AddStringToObject(o, "svg", sp);
        for (int i = 0; i < n; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "path", runs[i].path);
            cJSON_AddStringToObject(r, "model_hash", runs[i].h.model_hash);
            cJSON_AddStringToObject(r, "sampler", runs[i].h.sampler);
            cJSON_AddItemToObject(r, "total", loops_counts_json(&aggs[i].total));
            cJSON *src = cJSON_AddObjectToObject(r, "sources");
            for (int g = 0; g < aggs[i].n_groups; g++)
                cJSON_AddItemToObject(src, aggs[i].group[g], loops_counts_json(&aggs[i].groups[g]));
            cJSON_AddItemToArray(a, r);
        }
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else if (rc == DM_EXIT_OK) {
        printf("wrote %s and %s (%d runs)\n", out, sp, n);
    }
    for (int i = 0; i < MAX_RUNS; i++) {
        loops_run_free(&runs[i]);
        dm_loop_agg_free(&aggs[i]);
    }
    free(sp), free(md), free(sv);
    return rc;
}
