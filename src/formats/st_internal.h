/* st_internal — entry points of the safetensors reader that its tests and
 * its fuzzer use but the rest of demolish does not: parsing a checkpoint held
 * in memory, so a fuzzer can feed bytes without touching the file system and
 * AddressSanitizer sees every read (a malloc'd buffer has red zones, an mmap
 * does not). Not part of the public API in formats.h. */
#ifndef DM_ST_INTERNAL_H
#define DM_ST_INTERNAL_H

#include "formats/formats.h"

/* Parses buf[size] as one .safetensors file called `name` (used in error
 * messages and returned by dm_st_file_of), with exactly the validation of
 * dm_st_open. The buffer is borrowed: it must outlive st, and st must be
 * released with dm_st_close_buffer, never dm_st_close. On failure st is left
 * empty (nothing to release). */
int dm_st_open_buffer(dm_safetensors *st, const char *name, const uint8_t *buf, size_t size, dm_err *err);
void dm_st_close_buffer(dm_safetensors *st);

/* A string from a file made fit to quote in a one-line error message:
 * control characters become '?', and it is cut at ~200 bytes ("..."). */
typedef struct dm_st_shown {
    char s[208];
} dm_st_shown;
dm_st_shown dm_st_show(const char *s);

/* The largest header length accepted (the reference implementation's limit). */
#define DM_ST_MAX_HEADER ((uint64_t)100000000)

#endif
