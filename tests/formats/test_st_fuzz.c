/* test_st_fuzz — a deterministic mutation test of the safetensors reader (the
 * CTest companion of the libFuzzer target fuzz_safetensors.c). Seeded
 * mutations of valid checkpoints — bit flips, byte sets, inserts, deletes,
 * truncation, edits of numbers, dtypes and the header length, chunk copies —
 * are opened; the only requirements are no crash and no sanitizer report (run
 * it in the Sanitize build), and, when a mutant is accepted, that everything
 * the reader hands out is consistent: tensors inside the buffer, byte length =
 * shape x element size, names sorted and found. Mostly in memory
 * (dm_st_open_buffer on an exact-size malloc copy, so AddressSanitizer sees
 * any over-read), every 16th mutant also through a real file, plus mutants of
 * a sharded checkpoint's index.json. */
#include "ft_util.h"

#include "formats/st_internal.h"

#define N_MEMORY 20000  /* mutants opened from memory */
#define FILE_EVERY 16   /* of which every 16th also from a file */
#define N_INDEX 1000    /* mutants of index.json */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void buf_reserve(buf *b, size_t n)
{
    if (n > b->cap) {
        b->cap = n * 2;
        b->p = dm_realloc(b->p, b->cap);
    }
}

static void buf_insert(buf *b, size_t at, const void *src, size_t k)
{
    buf_reserve(b, b->n + k);
    memmove(b->p + at + k, b->p + at, b->n - at);
    memcpy(b->p + at, src, k);
    b->n += k;
}

static void buf_erase(buf *b, size_t at, size_t k)
{
    memmove(b->p + at, b->p + at + k, b->n - at - k);
    b->n -= k;
}

/* ---- mutations ---- */

static const char *const NUMBERS[] = {
    "0", "1", "-1", "7", "8", "-0", "1.5", "1e308", "-1e308", "4294967296", "9007199254740992",
    "9007199254740993", "18446744073709551616", "99999999999999999999999", "2147483648", "1e-300", "0.0",
};
static const char *const TOKENS[] = {
    "\"F32\"", "\"BF16\"", "\"F8_E4M3\"", "\"I64\"", "\"BOOL\"", "\"X\"", "null", "true", "[]", "{}", "[0,0]",
    "\"__metadata__\"", "\"shape\"", "\"data_offsets\"", "\"dtype\"", "\"\\u0000\"", "\"\\ud800\"", "[[[[",
};

/* The header spans [8, 8 + *hl) of b; inserts and deletes inside it move *hl. */
static void mutate_once(buf *b, size_t *hl, bool *len_forced)
{
    size_t hdr_end = 8 + *hl < b->n ? 8 + *hl : b->n;
    /* mostly a position inside the header (0: anywhere) */
    size_t in_hdr = hdr_end > 8 && ft_below(4) ? 8 + ft_below(hdr_end - 8) : 0;
    switch (ft_below(9)) {
    case 0:
        if (b->n)
            b->p[ft_below(b->n)] ^= (uint8_t)(1u << ft_below(8));
        break;
    case 1: {
        static const uint8_t special[] = { 0, 0xff, '"', '{', '}', '[', ']', ',', ':', '-', '9', ' ', '\\', '.', 'e' };
        if (b->n)
            b->p[in_hdr ? in_hdr : ft_below(b->n)] = ft_rand() & 1 ? (uint8_t)ft_rand() : special[ft_below(15)];
        break;
    }
    case 2: {
        uint8_t junk[8];
        size_t k = 1 + ft_below(8), at = in_hdr ? in_hdr : ft_below(b->n + 1);
        for (size_t i = 0; i < k; i++)
            junk[i] = (uint8_t)ft_rand();
        buf_insert(b, at, junk, k);
        if (at >= 8 && at <= 8 + *hl)
            *hl += k;
        break;
    }
    case 3: {
        if (!b->n)
            break;
        size_t at = in_hdr ? in_hdr : ft_below(b->n), k = 1 + ft_below(16);
        if (k > b->n - at)
            k = b->n - at;
        buf_erase(b, at, k);
        if (at >= 8 && at < 8 + *hl)
            *hl -= k < 8 + *hl - at ? k : 8 + *hl - at;
        break;
    }
    case 4:
        b->n = ft_below(b->n + 1);
        break;
    case 5:
    case 6: {   /* replace a number (or any token start) in the header with another */
        if (!in_hdr)
            break;
        size_t at = in_hdr;
        while (at < hdr_end && !(b->p[at] >= '0' && b->p[at] <= '9'))
            at++;
        size_t e = at;
        while (e < hdr_end && ((b->p[e] >= '0' && b->p[e] <= '9') || b->p[e] == '.' || b->p[e] == 'e' || b->p[e] == '-'))
            e++;
        if (at == hdr_end)
            break;
        const char *rep = ft_below(3) ? NUMBERS[ft_below(sizeof NUMBERS / sizeof *NUMBERS)]
                                      : TOKENS[ft_below(sizeof TOKENS / sizeof *TOKENS)];
        buf_erase(b, at, e - at);
        buf_insert(b, at, rep, strlen(rep));
        *hl = *hl - (e - at) + strlen(rep);
        break;
    }
    case 7: {   /* force the header length field */
        const uint64_t pick[] = { 0, 1, (uint64_t)b->n - 8, (uint64_t)b->n - 7, (uint64_t)1 << 63, ft_rand() & 0xfff,
                                  ft_rand() };
        *hl = (size_t)pick[ft_below(7)];
        *len_forced = true;
        break;
    }
    case 8: {   /* copy a chunk of the header elsewhere in it */
        if (!in_hdr)
            break;
        size_t from = 8 + ft_below(hdr_end - 8), k = 1 + ft_below(24);
        if (k > hdr_end - from)
            k = hdr_end - from;
        uint8_t tmp[24];
        memcpy(tmp, b->p + from, k);
        buf_insert(b, in_hdr, tmp, k);
        *hl += k;
        break;
    }
    }
}

/* A mutant of seed: 1-4 mutations; the length field follows the header's
 * edits unless a mutation forced it (so most mutants reach the JSON). */
static void make_mutant(const buf *seed, buf *out)
{
    out->n = 0;
    buf_insert(out, 0, seed->p, seed->n);
    size_t hl = 0;
    for (int i = 0; i < 8 && i < (int)out->n; i++)
        hl |= (size_t)out->p[i] << (8 * i);
    bool forced = false;
    int k = 1 + (int)ft_below(4);
    for (int i = 0; i < k; i++)
        mutate_once(out, &hl, &forced);
    if (out->n >= 8 && (forced || ft_below(4)))
        for (int i = 0; i < 8; i++)
            out->p[i] = (uint8_t)((uint64_t)hl >> (8 * i));
}

/* ---- checking what an accepted mutant gives ---- */

static uint64_t g_sink;   /* keeps the byte reads from being optimized away */

static void check_accepted(const dm_safetensors *st, const char *how)
{
    for (int i = 0; i < st->n_tensors; i++) {
        const dm_st_tensor *t = &st->tensors[i];
        if (!ft_check(t->file >= 0 && t->file < st->n_files, "%s: tensor \"%s\" file %d", how, t->name, t->file))
            continue;
        const uint8_t *base = st->files[t->file].map.data;
        size_t size = st->files[t->file].map.size;
        bool inside = t->data >= base && t->nbytes <= size && (size_t)(t->data - base) <= size - t->nbytes;
        ft_check(inside, "%s: tensor \"%s\" outside its file", how, t->name);
        ft_check(t->ndim >= 0 && t->ndim <= DM_ST_MAX_DIMS, "%s: ndim %d", how, t->ndim);
        ft_check((size_t)t->numel * dm_dtype_size(t->dtype) == t->nbytes, "%s: \"%s\" nbytes", how, t->name);
        ft_check(i == 0 || strcmp(st->tensors[i - 1].name, t->name) < 0, "%s: names not sorted/unique", how);
        ft_check(dm_st_find(st, t->name) == t, "%s: find(\"%s\") fails", how, t->name);
        if (inside)
            for (size_t k = 0; k < t->nbytes; k++)
                g_sink += t->data[k];
    }
    for (int f = 0; f < st->n_files; f++)
        for (int m = 0; m < st->files[f].n_meta; m++)
            g_sink += strlen(st->files[f].meta_keys[m]) + strlen(st->files[f].meta_values[m]);
}

/* ---- seeds ---- */

static void read_into(const char *path, buf *b)
{
    char *text;
    size_t len;
    dm_err err;
    DM_ASSERT(dm_read_file(path, &text, &len, &err) == 0);
    b->n = 0;
    buf_insert(b, 0, text, len);
    free(text);
}

/* A checkpoint in dir written by our writer: every element size, an empty
 * tensor, a scalar, metadata; max_shard 0 or small for several shards. */
static void write_seed_checkpoint(const char *dir, size_t max_shard)
{
    dm_err err = { "" };
    dm_st_writer *w = dm_st_writer_new(dir, max_shard);
    dm_st_writer_set_metadata(w, "format", "pt");
    dm_st_writer_set_metadata(w, "k\"ey", "v\\al");
    static const struct { const char *name; dm_dtype t; int nd; int64_t shape[3]; } T[] = {
        { "model.embed.weight", DM_DTYPE_BF16, 2, { 4, 3 } }, { "layer.0.scale_inv", DM_DTYPE_F32, 2, { 1, 2 } },
        { "layer.0.w", DM_DTYPE_F8_E4M3, 3, { 2, 2, 3 } },    { "bias", DM_DTYPE_F64, 1, { 2 } },
        { "empty", DM_DTYPE_I32, 2, { 0, 5 } },              { "scalar", DM_DTYPE_I64, 0, { 0 } },
        { "mask", DM_DTYPE_BOOL, 1, { 5 } },
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof T / sizeof *T && rc == 0; i++)
        rc = dm_st_writer_declare(w, T[i].name, T[i].t, T[i].nd, T[i].shape, &err);
    rc = rc ? rc : dm_st_writer_begin(w, &err);
    uint8_t bytes[64];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 37);
    for (size_t i = 0; i < sizeof T / sizeof *T && rc == 0; i++) {
        size_t nb = dm_dtype_size(T[i].t);
        for (int d = 0; d < T[i].nd; d++)
            nb *= (size_t)T[i].shape[d];
        rc = dm_st_writer_write(w, T[i].name, bytes, nb, &err);
    }
    rc = rc ? rc : dm_st_writer_finish(w, &err);
    dm_st_writer_free(w);
    DM_ASSERT(rc == 0);
}

static void fuzz_memory(const buf *seeds, int n_seeds, const char *dir)
{
    buf m = { 0 };
    char *path = dm_path_join(dir, "mutant.safetensors");
    int accepted = 0;
    for (int it = 0; it < N_MEMORY; it++) {
        make_mutant(&seeds[ft_below((uint64_t)n_seeds)], &m);
        uint8_t *exact = dm_malloc(m.n);   /* exact size: ASan flags any read past it */
        memcpy(exact, m.p, m.n);
        dm_safetensors st;
        dm_err err;
        if (dm_st_open_buffer(&st, "mutant", exact, m.n, &err) == 0) {
            accepted++;
            ft_check(st.n_files == 1 && st.files[0].map.data == exact, "memory: not the given buffer");
            check_accepted(&st, "memory");
            dm_st_close_buffer(&st);
        } else {
            ft_check(err.msg[0] && strstr(err.msg, "mutant") && !strchr(err.msg, '\n'), "bad message: %s", err.msg);
        }
        if (it % FILE_EVERY == 0) {
            ft_check(ft_write_bytes(path, exact, m.n) == 0, "write %s", path);
            if (dm_st_open(&st, path, &err) == 0) {
                check_accepted(&st, "file");
                dm_st_close(&st);
            }
        }
        free(exact);
    }
    printf("  %d memory mutants, %d accepted\n", N_MEMORY, accepted);
    free(m.p);
    free(path);
}

static void fuzz_index(const char *dir)
{
    char *index = dm_path_join(dir, "model.safetensors.index.json");
    buf seed = { 0 }, m = { 0 };
    read_into(index, &seed);
    int accepted = 0;
    for (int it = 0; it < N_INDEX; it++) {
        /* the text behind 8 dummy bytes, so mutate_once sees it all as "header" */
        static const uint8_t zero8[8];
        m.n = 0;
        buf_insert(&m, 0, zero8, 8);
        buf_insert(&m, 8, seed.p, seed.n);
        size_t hl = seed.n, k = 1 + ft_below(3);
        bool forced = false;
        for (size_t i = 0; i < k; i++)
            mutate_once(&m, &hl, &forced);
        size_t body = m.n >= 8 ? m.n - 8 : 0;
        ft_check(ft_write_bytes(index, m.p + (m.n - body), body) == 0, "write index");
        dm_safetensors st;
        dm_err err;
        if (dm_st_open(&st, index, &err) == 0) {
            accepted++;
            check_accepted(&st, "index");
            dm_st_close(&st);
        }
    }
    printf("  %d index mutants, %d accepted\n", N_INDEX, accepted);
    ft_write_bytes(index, seed.p, seed.n);
    free(seed.p);
    free(m.p);
    free(index);
}

int main(void)
{
    ft_seed(2024);
    char *dir = ft_scratch("st_fuzz");
    char *one = dm_path_join(dir, "one"), *many = dm_path_join(dir, "many");
    ft_mkdir_p(one);
    ft_mkdir_p(many);
    write_seed_checkpoint(one, 0);
    write_seed_checkpoint(many, 40);
    buf seeds[3] = { { 0 }, { 0 }, { 0 } };
    char *p = dm_path_join(one, "model.safetensors");
    read_into(p, &seeds[0]);
    free(p);
    dm_safetensors sharded;
    dm_err err;
    DM_ASSERT(dm_st_open(&sharded, many, &err) == 0 && sharded.n_files > 1);
    read_into(sharded.files[0].path, &seeds[1]);
    dm_st_close(&sharded);
    /* a hand-written one: whitespace padding, a hole, trailing data, numbers as floats */
    static const char hand[] = "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[0,4.0]},"
                               "\"__metadata__\":{\"x\":\"y\"},"
                               "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}} \n\t ";
    uint8_t len8[8] = { (uint8_t)(sizeof hand - 1) };
    buf_insert(&seeds[2], 0, len8, 8);
    buf_insert(&seeds[2], 8, hand, sizeof hand - 1);
    buf_insert(&seeds[2], seeds[2].n, "0123456789abcdef", 16);
    for (int s = 0; s < 3; s++) {   /* the seeds themselves are valid */
        dm_safetensors st;
        ft_check(dm_st_open_buffer(&st, "seed", seeds[s].p, seeds[s].n, &err) == 0, "seed %d rejected: %s", s, err.msg);
        dm_st_close_buffer(&st);
    }
    double t0 = dm_time_sec();
    fuzz_memory(seeds, 3, dir);
    fuzz_index(many);
    printf("  %.2f s (checksum %llu)\n", dm_time_sec() - t0, (unsigned long long)g_sink);
    for (int s = 0; s < 3; s++)
        free(seeds[s].p);
    dm_remove_tree(dir);
    free(one);
    free(many);
    free(dir);
    return ft_finish("test_st_fuzz");
}
