/* npy — writes NumPy .npy files (format 1.0), the interchange format for
 * logits between demolish and the Python reference tests. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

int cli_write_npy_f32(const char *path, const float *data, int64_t rows, int64_t cols, dm_err *err)
{
    char header[128];
    int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     (long long)rows, (long long)cols);
    /* magic(6) + version(2) + header length(2) + header, padded with spaces to a multiple of 64, ending in \n */
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)(n + pad + 1);
    size_t body = (size_t)(rows * cols) * sizeof(float);
    uint8_t *buf = dm_malloc(10 + hlen + body);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + 10, header, (size_t)n);
    memset(buf + 10 + n, ' ', (size_t)pad);
    buf[10 + n + pad] = '\n';
    memcpy(buf + 10 + hlen, data, body);
    int rc = dm_write_file_atomic(path, buf, 10 + hlen + body, err);
    free(buf);
    return rc;
}
