/* npy — writes NumPy .npy files (format 1.0): logits for the reference tests,
 * token batches for the training oracle. */
#include "formats/formats.h"

#include <stdlib.h>
#include <string.h>

static const char *npy_descr(dm_dtype t)
{
    switch (t) {
    case DM_DTYPE_F32: return "<f4";
    case DM_DTYPE_F64: return "<f8";
    case DM_DTYPE_I32: return "<i4";
    case DM_DTYPE_I64: return "<i8";
    case DM_DTYPE_U32: return "<u4";
    case DM_DTYPE_U8: return "|u1";
    default: return NULL;
    }
}

int dm_npy_write(const char *path, dm_dtype dtype, int ndim, const int64_t *shape, const void *data, dm_err *err)
{
    const char *descr = npy_descr(dtype);
    if (!descr || ndim < 1 || ndim > 4)
        return dm_errorf(err, "%s: cannot write dtype %s with %d dims as .npy", path, dm_dtype_name(dtype), ndim);
    char dims[96] = "";
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%lld,%s", (long long)shape[i],
                 i + 1 < ndim ? " " : "");
        count *= (size_t)shape[i];
    }
    char header[256];
    int n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
    /* magic(6) + version(2) + header length(2) + header, padded with spaces to a multiple of 64, ending in \n */
    int pad = (64 - (10 + n + 1) % 64) % 64;
    size_t hlen = (size_t)(n + pad + 1), body = count * dm_dtype_size(dtype);
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
