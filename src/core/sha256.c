/* sha256 — SHA-256 through nettle, for the identities demolish records
 * (the model and data a calibration ran on) and for proving that pruning
 * copied bytes exactly. Files are hashed through a bounded buffer, so hashing
 * a 300 GB checkpoint needs no memory to speak of. */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(sizeof(struct sha256_ctx) <= sizeof(dm_sha256_ctx), "dm_sha256_ctx too small for nettle's context");

void dm_sha256_init(dm_sha256_ctx *c) { sha256_init((struct sha256_ctx *)c); }

void dm_sha256_update(dm_sha256_ctx *c, const void *p, size_t n)
{
    sha256_update((struct sha256_ctx *)c, n, p);
}

void dm_sha256_final(dm_sha256_ctx *c, uint8_t out[32]) { sha256_digest((struct sha256_ctx *)c, 32, out); }

void dm_sha256_hex(const uint8_t digest[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

int dm_sha256_file(const char *path, uint8_t out[32], dm_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dm_errorf(err, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = dm_malloc(CHUNK);
    dm_sha256_ctx c;
    dm_sha256_init(&c);
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = dm_errorf(err, "%s: read error: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        dm_sha256_update(&c, buf, (size_t)r);
    }
    close(fd);
    free(buf);
    if (rc == 0)
        dm_sha256_final(&c, out);
    return rc;
}
