/* test_calib — the calibration stage's own contracts, beside the float64
 * reference comparison of tests/calib/check_calib_reference.sh:
 *  - data loading: "text" and chat "messages" records (rendered with the
 *    tokenizer's template), "source", the weights field (null and absent
 *    mean none), blank lines and CRLF; bad records fail with one line naming
 *    file:line and the problem; a non-.jsonl file is one document;
 *  - stats files: save -> load is bit-exact (accumulators, imatrix, metadata),
 *    also for arbitrary finite doubles; save(load(x)) == x;
 *  - merge: two runs merged equal one run over the concatenated data (sums
 *    within MERGE_REL_TOL, maxnorm exactly, tokens, runs); merges of
 *    different models, routers or gates, and past the source limit, refused;
 *  - fuzzing: mutated stats files (header JSON via json_mutate.h, bytes,
 *    truncation) and mutated .jsonl files load or fail with one line naming
 *    the file, never crash (run in the Sanitize build for memory errors).
 * Uses a random tiny model (preset tiny, f32) under $DM_TEST_TMP. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib/calib.h"
#include "check.h"
#include "json_mutate.h"

/* Merged sums vs one run over the same data: the same non-negative terms,
 * added in another association (at most a few hundred terms): ~n·2^-53. */
#define MERGE_REL_TOL 1e-12
#define N_STATS_MUTANTS 1500
#define N_JSONL_MUTANTS 3000

static char *tmp_dir;
static dm_model *model;
static dm_tokenizer *tok;

static char *tmp_path(const char *name) { return dm_path_join(tmp_dir, name); }

static void write_text(const char *path, const void *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    DM_ASSERT(f);
    DM_ASSERT(fwrite(text, 1, len, f) == len);
    fclose(f);
}

static bool one_line_naming(const dm_err *err, const char *what)
{
    return strstr(err->msg, what) && !strchr(err->msg, '\n');
}

/* ---- data loading ---------------------------------------------------------------- */

static const char *const DOCS_JSONL =
    "{\"text\": \"def f(x):\\n    return x * 2\\n\", \"source\": \"code\", \"w\": [[0, 3, 2.5], [4, 9, 0]]}\n"
    "\n"
    "  {\"messages\": [{\"role\": \"user\", \"content\": \"What is 6 x 7?\"}, {\"role\": \"assistant\", "
    "\"content\": \"<think>six sevens</think>42\"}], \"source\": \"chat\"}\r\n"
    "{\"text\": \"plain prose without a source.\", \"w\": null}\n"
    "{\"text\": \"The answer</think> is 42.</think> Done.\", \"source\": \"code\"}";

static void test_data_ok(void)
{
    char *path = tmp_path("docs.jsonl");
    write_text(path, DOCS_JSONL, strlen(DOCS_JSONL));
    dm_calib_data d;
    dm_err err = { "" };
    CHECK(dm_calib_data_load(&d, path, tok, "w", &err) == 0, "load: %s", err.msg);
    CHECK(d.n == 4, "%d documents, want 4", d.n);
    if (d.n == 4) {
        CHECK(!strcmp(d.doc[0].text, "def f(x):\n    return x * 2\n") && d.doc[0].len == strlen(d.doc[0].text),
              "doc 0 text");
        CHECK(!strcmp(d.doc[0].source, "code") && !strcmp(d.doc[1].source, "chat") && !strcmp(d.doc[2].source, ""),
              "sources '%s' '%s' '%s'", d.doc[0].source, d.doc[1].source, d.doc[2].source);
        CHECK(d.doc[0].n_regions == 2 && d.doc[0].region[0] == 0 && d.doc[0].region[1] == 3 &&
                  d.doc[0].region[2] == 4 && d.doc[0].region[3] == 9 && d.doc[0].region_weight[0] == 2.5 &&
                  d.doc[0].region_weight[1] == 0,
              "doc 0 regions");
        CHECK(d.doc[2].n_regions == 0 && d.doc[3].n_regions == 0, "null / absent weights give no regions");
        dm_chat_msg msgs[2] = { { "user", "What is 6 x 7?" }, { "assistant", "<think>six sevens</think>42" } };
        char *want = dm_chat_render(tok, dm_chat_style_for(tok), msgs, 2, false, true);
        CHECK(!strcmp(d.doc[1].text, want), "messages rendered as '%s', want '%s'", d.doc[1].text, want);
        CHECK(strstr(d.doc[1].text, "What is 6 x 7?") && strstr(d.doc[1].text, "<|user|>") &&
                  strstr(d.doc[1].text, "<|assistant|>"),
              "chat template markers missing: '%s'", d.doc[1].text);
        free(want);
    }
    char hex[65];
    uint8_t dg[32];
    CHECK(dm_sha256_file(path, dg, &err) == 0, "sha256: %s", err.msg);
    dm_sha256_hex(dg, hex);
    CHECK(!strcmp(hex, d.hash), "data hash %s, want sha256 of the file %s", d.hash, hex);
    /* --source: a selection keeps those documents in order and changes the data hash */
    dm_calib_data f;
    CHECK(dm_calib_data_load(&f, path, tok, "w", &err) == 0, "load: %s", err.msg);
    CHECK(dm_calib_data_filter_sources(&f, "chat,code", path, &err) == 0 && f.n == 3 &&
              !strcmp(f.doc[0].source, "code") && !strcmp(f.doc[1].source, "chat") &&
              !strcmp(f.doc[2].source, "code") && f.doc[0].n_regions == 2,
          "filter chat,code: %d documents (%s)", f.n, err.msg);
    CHECK(strcmp(f.hash, d.hash) != 0 && strlen(f.hash) == 64, "the selection does not change the data hash");
    CHECK(dm_calib_data_filter_sources(&f, "cod,hat", path, &err) == -1 && strstr(err.msg, path),
          "no match must fail naming the file: %s", err.msg);
    dm_calib_data_free(&f);
    dm_calib_data_free(&d);
    /* without a weights field the ranges are ignored */
    CHECK(dm_calib_data_load(&d, path, tok, NULL, &err) == 0 && d.n == 4 && d.doc[0].n_regions == 0,
          "no weights field: %s", err.msg);
    dm_calib_data_free(&d);
    /* any other file is one document */
    char *txt = tmp_path("doc.txt");
    write_text(txt, "just text\n{not json", 19);
    CHECK(dm_calib_data_load(&d, txt, tok, "w", &err) == 0 && d.n == 1 && d.doc[0].len == 19 &&
              !memcmp(d.doc[0].text, "just text\n{not json", 19),
          "a text file as one document: %s", err.msg);
    dm_calib_data_free(&d);
    free(txt);
    free(path);
}

static void test_data_errors(void)
{
    static const struct {
        const char *jsonl, *want;
    } cases[] = {
        { "{\"text\": \"ok\"}\n[1, 2]\n", ":2: not a JSON object" },
        { "{\"text\": \"ok\"}\n\n{\"text\": \"ok\"\n", ":3: not a JSON object" },
        { "{\"txt\": \"ok\"}\n", ":1: a record needs a string \"text\" or a \"messages\" list" },
        { "{\"text\": 5}\n", ":1: a record needs" },
        { "{\"text\": \"ok\", \"source\": 3}\n", ":1: \"source\" must be a string" },
        { "{\"messages\": [{\"role\": \"user\"}]}\n", ":1: messages[0] needs string \"role\" and \"content\"" },
        { "{\"messages\": [\"hi\"]}\n", ":1: messages[0] needs" },
        { "{\"text\": \"abcdef\", \"w\": [[0, 7, 1]]}\n", ":1: weights[0] must be [start, end, weight]" },
        { "{\"text\": \"abcdef\", \"w\": [[3, 2, 1]]}\n", ":1: weights[0] must be" },
        { "{\"text\": \"abcdef\", \"w\": [[0, 2, 1], [0, 2, -1]]}\n", ":1: weights[1] must be" },
        { "{\"text\": \"abcdef\", \"w\": [[0, 2]]}\n", ":1: weights[0] must be" },
        { "{\"text\": \"abcdef\", \"w\": [[-1, 2, 1]]}\n", ":1: weights[0] must be" },
        { "{\"text\": \"abcdef\", \"w\": [[0.5, 2, 1]]}\n", ":1: weights[0] must be" },
        { "{\"text\": \"abcdef\", \"w\": [0, 2, 1]}\n", ":1: weights[0] must be" },
        { "{\"text\": \"abcdef\", \"w\": {\"a\": 1}}\n", ":1: the weights field must be a list" },
        { "\n \n", "no calibration documents" },
    };
    char *path = tmp_path("bad.jsonl");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(path, cases[i].jsonl, strlen(cases[i].jsonl));
        dm_calib_data d;
        dm_err err = { "" };
        int rc = dm_calib_data_load(&d, path, tok, "w", &err);
        CHECK(rc == -1, "case %zu: accepted", i);
        CHECK(rc == -1 && one_line_naming(&err, path) && strstr(err.msg, cases[i].want),
              "case %zu: message '%s', want '%s' naming the file", i, err.msg, cases[i].want);
        CHECK(d.n == 0 && d.doc == NULL, "case %zu: data not emptied on failure", i);
    }
    dm_calib_data d;
    dm_err err = { "" };
    char *missing = tmp_path("missing.jsonl");
    CHECK(dm_calib_data_load(&d, missing, tok, NULL, &err) == -1 && one_line_naming(&err, missing),
          "missing file: '%s'", err.msg);
    free(missing);
    free(path);
}

/* ---- stats --------------------------------------------------------------------------- */

/* Calibrates model on jsonl text (weights field "w", </think> weight 2 over ±1 token). */
static int calibrate_text(const char *name, const char *jsonl, dm_gate_mode gate, bool imatrix,
                          dm_calib_stats *st)
{
    char *path = tmp_path(name);
    write_text(path, jsonl, strlen(jsonl));
    dm_calib_data d;
    dm_err err = { "" };
    int rc = dm_calib_data_load(&d, path, tok, "w", &err);
    dm_calib_stats_init(st, model);
    if (rc == 0) {
        dm_calib_opts o = dm_calib_defaults();
        o.gate = gate;
        o.ctx = 16;
        o.imatrix = imatrix;
        o.think_close_weight = 2;
        o.think_close_window = 1;
        rc = dm_calibrate(model, tok, &d, &o, st, &err);
        dm_calib_data_free(&d);
    }
    CHECK(rc == 0, "calibrate %s: %s", name, err.msg);
    free(path);
    return rc;
}

static int source_of(const dm_calib_stats *st, const char *name)
{
    for (int s = 0; s < st->n_sources; s++)
        if (!strcmp(st->source[s], name))
            return s;
    return -1;
}

static int imat_of(const dm_calib_stats *st, const char *name)
{
    for (int i = 0; i < st->n_imat; i++)
        if (!strcmp(st->imat_name[i], name))
            return i;
    return -1;
}

/* a and b hold the same shapes, metadata, sources (by name) and imatrix names. */
static bool same_layout(const dm_calib_stats *a, const dm_calib_stats *b, const char *what)
{
    bool ok = a->n_layers == b->n_layers && a->n_rows == b->n_rows && a->main_layers == b->main_layers &&
              a->top_k == b->top_k && a->n_group == b->n_group && a->topk_group == b->topk_group &&
              a->n_sources == b->n_sources && a->n_imat == b->n_imat && !strcmp(a->gate_mode, b->gate_mode) &&
              !strcmp(a->model_hash, b->model_hash);
    for (int l = 0; ok && l < a->n_layers; l++)
        ok = a->n_experts[l] == b->n_experts[l] && a->layer_off[l] == b->layer_off[l];
    for (int s = 0; ok && s < a->n_sources; s++)
        ok = source_of(b, a->source[s]) >= 0;
    for (int i = 0; ok && i < a->n_imat; i++)
        ok = imat_of(b, a->imat_name[i]) >= 0 && b->imat_k[imat_of(b, a->imat_name[i])] == a->imat_k[i];
    CHECK(ok, "%s: layouts differ (layers %d/%d, rows %zu/%zu, sources %d/%d, imatrix %d/%d, gate %s/%s)", what,
          a->n_layers, b->n_layers, a->n_rows, b->n_rows, a->n_sources, b->n_sources, a->n_imat, b->n_imat,
          a->gate_mode, b->gate_mode);
    return ok;
}

static void check_bit_exact(const dm_calib_stats *a, const dm_calib_stats *b, const char *what)
{
    if (!same_layout(a, b, what))
        return;
    CHECK(a->tokens == b->tokens && !memcmp(&a->weight_sum, &b->weight_sum, sizeof(double)) &&
              a->n_runs == b->n_runs && !strcmp(a->data_hash, b->data_hash),
          "%s: tokens %lld/%lld, weight_sum %.17g/%.17g, runs %d/%d", what, (long long)a->tokens,
          (long long)b->tokens, a->weight_sum, b->weight_sum, a->n_runs, b->n_runs);
    for (int s = 0; s < a->n_sources; s++)
        CHECK(!memcmp(a->acc[s], b->acc[source_of(b, a->source[s])], a->n_rows * DM_ACC_N * sizeof(double)),
              "%s: acc.%s differs", what, a->source[s]);
    for (int i = 0; i < a->n_imat; i++) {
        int j = imat_of(b, a->imat_name[i]);
        CHECK(!memcmp(a->imat_sum2[i], b->imat_sum2[j], (size_t)a->imat_k[i] * sizeof(double)) &&
                  !memcmp(&a->imat_count[i], &b->imat_count[j], sizeof(double)),
              "%s: imatrix %s differs", what, a->imat_name[i]);
    }
}

static const char *const MERGE_A =
    "{\"text\": \"int main(void) { return 0; }\", \"source\": \"code\", \"w\": [[4, 12, 3], [10, 20, 0]]}\n"
    "{\"text\": \"<think>the sum is 5</think>ok</think> five.\", \"source\": \"reasoning\"}\n";
static const char *const MERGE_B =
    "{\"text\": \"A paragraph of prose with no source at all, long enough for two windows.\"}\n"
    "{\"text\": \"for (k = 0; k < n; k++) s += k * k;\", \"source\": \"code\", \"w\": [[0, 3, 0.5]]}\n"
    "{\"text\": \"Why?</think> Because.\", \"source\": \"extra\"}\n";

static void test_roundtrip(void)
{
    dm_calib_stats st, back, again;
    char *ab = dm_asprintf("%s%s", MERGE_A, MERGE_B);
    if (calibrate_text("rt.jsonl", ab, DM_GATE_CEREBRAS, true, &st)) {
        free(ab);
        dm_calib_stats_free(&st);
        return;
    }
    free(ab);
    CHECK(st.n_sources == 4 && st.n_imat > 0 && st.tokens > 16, "run: %d sources, %d imatrix, %lld tokens",
          st.n_sources, st.n_imat, (long long)st.tokens);
    char *p1 = tmp_path("rt1.st"), *p2 = tmp_path("rt2.st"), *p3 = tmp_path("rt3.st");
    dm_err err = { "" };
    CHECK(dm_calib_save(&st, p1, &err) == 0, "save: %s", err.msg);
    CHECK(dm_calib_load(&back, p1, &err) == 0, "load: %s", err.msg);
    check_bit_exact(&st, &back, "save/load");
    CHECK(!strcmp(back.source[0], "all"), "source 0 is '%s', want all", back.source[0]);
    /* arbitrary finite doubles (subnormals, -0, huge) survive too */
    jm_rng r = { 99 };
    for (int s = 0; s < back.n_sources; s++)
        for (size_t i = 0; i < back.n_rows * DM_ACC_N; i++) {
            uint64_t bits = jm_next(&r);
            double v;
            memcpy(&v, &bits, sizeof v);
            back.acc[s][i] = isfinite(v) ? v : -0.0;
        }
    back.weight_sum = 1.0 / 3.0;
    back.tokens = (int64_t)1 << 53;
    CHECK(dm_calib_save(&back, p2, &err) == 0, "save 2: %s", err.msg);
    CHECK(dm_calib_load(&again, p2, &err) == 0, "load 2: %s", err.msg);
    check_bit_exact(&back, &again, "random doubles save/load");
    CHECK(dm_calib_save(&again, p3, &err) == 0, "save 3: %s", err.msg);
    char *b2, *b3;
    size_t n2, n3;
    if (dm_read_file(p2, &b2, &n2, &err) == 0 && dm_read_file(p3, &b3, &n3, &err) == 0) {
        CHECK(n2 == n3 && !memcmp(b2, b3, n2), "save(load(x)) is not byte-identical to x (%zu vs %zu bytes)", n2, n3);
        free(b2);
        free(b3);
    }
    dm_calib_stats_free(&again);
    dm_calib_stats_free(&back);
    dm_calib_stats_free(&st);
    free(p1);
    free(p2);
    free(p3);
}

static bool close_rel(double a, double b) { return a == b || fabs(a - b) <= MERGE_REL_TOL * fmax(fabs(a), fabs(b)); }

static void check_merged(const dm_calib_stats *m, const dm_calib_stats *one)
{
    if (!same_layout(m, one, "merge vs one run"))
        return;
    CHECK(m->tokens == one->tokens && close_rel(m->weight_sum, one->weight_sum) && m->n_runs == 2,
          "merge: tokens %lld/%lld, weight_sum %.17g/%.17g, runs %d", (long long)m->tokens, (long long)one->tokens,
          m->weight_sum, one->weight_sum, m->n_runs);
    double worst = 0;
    for (int s = 0; s < one->n_sources; s++) {
        const double *a = m->acc[source_of(m, one->source[s])], *b = one->acc[s];
        for (size_t i = 0; i < one->n_rows * DM_ACC_N; i++) {
            bool max_col = i % DM_ACC_N == DM_ACC_MAXNORM;
            if (!max_col && a[i] != b[i])
                worst = fmax(worst, fabs(a[i] - b[i]) / fmax(fabs(a[i]), fabs(b[i])));
            CHECK(max_col ? a[i] == b[i] : close_rel(a[i], b[i]), "merge: acc.%s[%zu][%zu] %.17g vs one run %.17g",
                  one->source[s], i / DM_ACC_N, i % DM_ACC_N, a[i], b[i]);
        }
    }
    for (int i = 0; i < one->n_imat; i++) {
        int j = imat_of(m, one->imat_name[i]);
        for (int k = 0; k < one->imat_k[i]; k++)
            CHECK(close_rel(m->imat_sum2[j][k], one->imat_sum2[i][k]), "merge: imatrix %s[%d] %.17g vs %.17g",
                  one->imat_name[i], k, m->imat_sum2[j][k], one->imat_sum2[i][k]);
        CHECK(close_rel(m->imat_count[j], one->imat_count[i]), "merge: imatrix %s count", one->imat_name[i]);
    }
    printf("  merge vs one run: max rel diff of the sums %.3g (bound %g)\n", worst, MERGE_REL_TOL);
}

static void test_merge(void)
{
    dm_calib_stats a, b, one;
    char *ab = dm_asprintf("%s%s", MERGE_A, MERGE_B);
    int rc = calibrate_text("ma.jsonl", MERGE_A, DM_GATE_MODEL, true, &a) |
             calibrate_text("mb.jsonl", MERGE_B, DM_GATE_MODEL, true, &b) |
             calibrate_text("mab.jsonl", ab, DM_GATE_MODEL, true, &one);
    free(ab);
    dm_err err = { "" };
    if (rc == 0) {
        char *pa = tmp_path("ma.st"), *pb = tmp_path("mb.st");
        dm_calib_stats fa, fb;   /* through files, as `calibrate --merge` does */
        CHECK(dm_calib_save(&a, pa, &err) == 0 && dm_calib_save(&b, pb, &err) == 0, "save: %s", err.msg);
        CHECK(dm_calib_load(&fa, pa, &err) == 0 && dm_calib_load(&fb, pb, &err) == 0, "load: %s", err.msg);
        CHECK(dm_calib_merge(&fa, &fb, &err) == 0, "merge: %s", err.msg);
        check_merged(&fa, &one);
        CHECK(strcmp(fa.data_hash, a.data_hash) != 0 && strcmp(fa.data_hash, b.data_hash) != 0,
              "merged data hash should name both inputs");
        dm_calib_stats_free(&fa);
        dm_calib_stats_free(&fb);
        free(pa);
        free(pb);
    }
    dm_calib_stats_free(&a);
    dm_calib_stats_free(&b);
    dm_calib_stats_free(&one);
}

/* A copy of st made through a file (the tests edit copies). */
static int copy_stats(const dm_calib_stats *st, dm_calib_stats *out)
{
    char *p = tmp_path("copy.st");
    dm_err err = { "" };
    int rc = dm_calib_save(st, p, &err) || dm_calib_load(out, p, &err) ? -1 : 0;
    CHECK(rc == 0, "copy: %s", err.msg);
    free(p);
    return rc;
}

static void expect_refused(dm_calib_stats *dst, const dm_calib_stats *src, const char *want, const char *what)
{
    dm_err err = { "" };
    int rc = dm_calib_merge(dst, src, &err);
    CHECK(rc == -1 && strstr(err.msg, want) && !strchr(err.msg, '\n'), "%s: merge rc %d, message '%s', want '%s'",
          what, rc, err.msg, want);
}

static void test_merge_refusals(void)
{
    dm_calib_stats base, other;
    if (calibrate_text("mr.jsonl", MERGE_A, DM_GATE_MODEL, false, &base)) {
        dm_calib_stats_free(&base);
        return;
    }
    if (copy_stats(&base, &other) == 0) {
        snprintf(other.gate_mode, sizeof other.gate_mode, "cerebras");
        expect_refused(&base, &other, "different gates", "other gate");
        dm_calib_stats_free(&other);
    }
    if (copy_stats(&base, &other) == 0) {
        other.model_hash[0] = other.model_hash[0] == 'a' ? 'b' : 'a';
        expect_refused(&base, &other, "different models", "other model hash");
        dm_calib_stats_free(&other);
    }
    if (copy_stats(&base, &other) == 0) {
        other.top_k++;
        expect_refused(&base, &other, "different routers", "other top_k");
        dm_calib_stats_free(&other);
    }
    if (copy_stats(&base, &other) == 0) {
        int l = other.main_layers - 1;   /* move one expert between layers: same row count */
        other.n_experts[l]--;
        other.n_experts[l - 1]++;
        expect_refused(&base, &other, "different models", "other experts per layer");
        dm_calib_stats_free(&other);
    }
    dm_calib_stats small;   /* tiny-softmax: other layers and rows */
    char *dir = tmp_path("calib_softmax");
    dm_remove_tree(dir);
    dm_init_opts io = { .config_json = dm_preset_find("tiny-softmax")->config_json, .dtype = DM_WFMT_F32, .seed = 2 };
    dm_model *m2 = NULL;
    dm_err err = { "" };
    if (dm_init_model(dir, &io, &err) == 0 && dm_model_load(&m2, dir, &err) == 0) {
        dm_calib_stats_init(&small, m2);
        expect_refused(&base, &small, "different models", "other model shape");
        dm_calib_stats_free(&small);
    } else {
        CHECK(0, "tiny-softmax model: %s", err.msg);
    }
    dm_model_free(m2);
    free(dir);
    /* sources beyond DM_CALIB_MAX_SOURCES: refused, and the destination left as it was */
    dm_calib_stats full, before;
    dm_calib_stats_init(&full, model);
    for (int i = 0; full.n_sources < DM_CALIB_MAX_SOURCES; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%d", i);
        dm_calib_source(&full, name);
    }
    full.acc[1][0] = 7;
    full.n_runs = 1;
    if (copy_stats(&full, &before) == 0) {
        expect_refused(&full, &base, "more than", "too many sources");
        check_bit_exact(&before, &full, "a refused merge");
        dm_calib_stats_free(&before);
    }
    dm_calib_stats_free(&full);
    dm_calib_stats_free(&base);
}

/* ---- fuzzing --------------------------------------------------------------------------- */

/* What a loaded stats file guarantees to its users (prune plans, merge). */
static void check_loaded(const dm_calib_stats *st, int i)
{
    size_t rows = 0;
    bool ok = st->n_layers >= 0 && st->n_sources >= 1 && !strcmp(st->source[0], "all") && st->top_k >= 1 &&
              st->main_layers >= 0 && st->main_layers <= st->n_layers;
    for (int l = 0; ok && l < st->n_layers; l++) {
        ok = st->n_experts[l] >= 0 && st->layer_off[l] == rows;
        rows += (size_t)st->n_experts[l];
    }
    ok = ok && rows == st->n_rows;
    for (int k = 0; ok && k < st->n_imat; k++)
        ok = st->imat_k[k] >= 0 && st->imat_name[k] && (st->imat_k[k] == 0 || st->imat_sum2[k]);
    CHECK(ok, "mutant %d: a loaded stats file breaks its invariants", i);
    volatile double sink = 0;   /* every accumulator and imatrix value readable (ASan) */
    for (int s = 0; ok && s < st->n_sources; s++)
        for (size_t r = 0; r < st->n_rows * DM_ACC_N; r++)
            sink += st->acc[s][r];
    for (int k = 0; ok && k < st->n_imat; k++)
        for (int j = 0; j < st->imat_k[k]; j++)
            sink += st->imat_sum2[k][j] + st->imat_count[k];
    (void)sink;
}

/* Mutants of a small stats file: the header JSON (length prefix fixed up or
 * not), random bytes anywhere, or a truncation. */
static void test_fuzz_stats(void)
{
    dm_calib_stats st;
    if (calibrate_text("fz.jsonl", MERGE_A, DM_GATE_MODEL, false, &st)) {
        dm_calib_stats_free(&st);
        return;
    }
    static const char *const names[] = { "model.layers.1.mlp.gate.weight", "model.layers.0.self_attn.o_proj.weight",
                                         "model.layers.2.mlp.experts.3.down_proj.weight" };
    for (int i = 0; i < 3; i++) {
        int k = dm_calib_imat(&st, names[i], 4 + 4 * i);
        for (int j = 0; j < st.imat_k[k]; j++)
            st.imat_sum2[k][j] = j + 0.5;
        st.imat_count[k] = 3;
    }
    char *base = tmp_path("fz.st"), *mpath = tmp_path("fz-mutant.st");
    dm_err err = { "" };
    char *file;
    size_t len;
    if (dm_calib_save(&st, base, &err) || dm_read_file(base, &file, &len, &err)) {
        CHECK(0, "fuzz base: %s", err.msg);
        dm_calib_stats_free(&st);
        free(base);
        free(mpath);
        return;
    }
    uint64_t hlen;
    memcpy(&hlen, file, 8);
    jm_rng r = { 4242 };
    int accepted = 0;
    for (int i = 0; i < N_STATS_MUTANTS; i++) {
        char *m;
        size_t n;
        switch (i % 4) {
        case 0: case 1: {   /* the header JSON */
            char *h = jm_mutate(&r, file + 8, hlen);
            size_t hn = strlen(h);
            n = 8 + hn + (len - 8 - hlen);
            m = malloc(n);
            uint64_t hl = i % 4 == 0 ? hn : hlen;
            memcpy(m, &hl, 8);
            memcpy(m + 8, h, hn);
            memcpy(m + 8 + hn, file + 8 + hlen, len - 8 - hlen);
            free(h);
            break;
        }
        case 2: {           /* bytes anywhere (the data section included) */
            n = len;
            m = malloc(n);
            memcpy(m, file, n);
            for (int k = 1 + (int)(jm_next(&r) % 8); k > 0; k--)
                m[jm_next(&r) % n] ^= (char)(1 + jm_next(&r) % 255);
            break;
        }
        default:            /* truncation */
            n = jm_next(&r) % len;
            m = malloc(n + 1);
            memcpy(m, file, n);
        }
        write_text(mpath, m, n);
        free(m);
        dm_calib_stats got;
        dm_err e = { "" };
        if (dm_calib_load(&got, mpath, &e) == 0) {
            accepted++;
            check_loaded(&got, i);
            dm_calib_stats_free(&got);
        } else {
            CHECK(one_line_naming(&e, mpath), "mutant %d: message '%s' does not name the file", i, e.msg);
        }
    }
    printf("  stats fuzz: %d mutants, %d accepted\n", N_STATS_MUTANTS, accepted);
    free(file);
    dm_calib_stats_free(&st);
    free(base);
    free(mpath);
}

static void test_fuzz_jsonl(void)
{
    char *path = tmp_path("fz-mutant.jsonl");
    jm_rng r = { 777 };
    int accepted = 0;
    for (int i = 0; i < N_JSONL_MUTANTS; i++) {
        char *m = jm_mutate(&r, DOCS_JSONL, strlen(DOCS_JSONL));
        write_text(path, m, strlen(m));
        free(m);
        dm_calib_data d;
        dm_err e = { "" };
        if (dm_calib_data_load(&d, path, tok, "w", &e) == 0) {
            accepted++;
            bool ok = d.n > 0;
            for (int k = 0; ok && k < d.n; k++) {
                const dm_calib_doc *doc = &d.doc[k];
                ok = doc->text && doc->source && strlen(doc->text) == doc->len;
                for (int g = 0; ok && g < doc->n_regions; g++)
                    ok = doc->region[2 * g] <= doc->region[2 * g + 1] && doc->region[2 * g + 1] <= doc->len &&
                         doc->region_weight[g] >= 0 && isfinite(doc->region_weight[g]);
            }
            CHECK(ok, "mutant %d: loaded documents break their invariants", i);
            dm_calib_data_free(&d);
        } else {
            CHECK(one_line_naming(&e, path), "mutant %d: message '%s' does not name the file", i, e.msg);
        }
    }
    printf("  jsonl fuzz: %d mutants, %d accepted\n", N_JSONL_MUTANTS, accepted);
    free(path);
}

int main(void)
{
    dm_threads_set(1);
    dm_verbosity = 0;
    const char *base = getenv("DM_TEST_TMP");
    char *root = dm_strdup(base && *base ? base : "/tmp/dm-test");
    tmp_dir = dm_path_join(root, "calib");
    free(root);
    dm_remove_tree(tmp_dir);
    dm_make_dirs(tmp_dir);
    char *dir = tmp_path("calib_tiny");
    dm_init_opts o = { .config_json = dm_preset_find("tiny")->config_json, .dtype = DM_WFMT_F32, .seed = 5 };
    dm_err err = { "" };
    if (dm_init_model(dir, &o, &err) || dm_model_load(&model, dir, &err) || dm_tokenizer_load(&tok, dir, &err)) {
        fprintf(stderr, "FAIL tiny model: %s\n", err.msg);
        return 1;
    }
    free(dir);
    double t0 = dm_time_sec();
    test_data_ok();
    test_data_errors();
    test_roundtrip();
    test_merge();
    test_merge_refusals();
    test_fuzz_stats();
    test_fuzz_jsonl();
    printf("  (%.1f s)\n", dm_time_sec() - t0);
    dm_tokenizer_free(tok);
    dm_model_free(model);
    free(tmp_dir);
    return check_finish("test_calib");
}
