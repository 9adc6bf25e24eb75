/* file — the file-system side of demolish's promises: inputs are mapped
 * read-only and never modified; outputs are written under a temporary name and
 * renamed into place only when complete, so an interrupted run (even kill -9)
 * never leaves something that looks finished. */
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int dm_map_file(dm_map *map, const char *path, dm_err *err)
{
    map->data = NULL;
    map->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dm_errorf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dm_errorf(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dm_errorf(err, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return dm_errorf(err, "%s: cannot mmap: %s", path, strerror(e));
        }
        map->data = p;
        map->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void dm_unmap_file(dm_map *map)
{
    if (map->data)
        munmap((void *)map->data, map->size);
    map->data = NULL;
    map->size = 0;
}

int dm_read_file(const char *path, char **out, size_t *out_len, dm_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dm_errorf(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = dm_malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            buf = dm_realloc(buf, cap *= 2);
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return dm_errorf(err, "%s: read error", path);
    }
    buf[len] = 0;
    *out = buf;
    if (out_len)
        *out_len = len;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int dm_write_file_atomic(const char *path, const void *data, size_t len, dm_err *err)
{
    char *tmp = dm_asprintf("%s.tmp-%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        dm_errorf(err, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        dm_errorf(err, "%s: write failed: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        dm_errorf(err, "%s: cannot rename into place: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

bool dm_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool dm_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *dm_path_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (*b == '/')
        b++;
    return dm_asprintf("%.*s/%s", (int)la, a, b);
}

int dm_copy_file(const char *src, const char *dst, dm_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return dm_errorf(err, "%s: cannot open: %s", src, strerror(errno));
    char *tmp = dm_asprintf("%s.tmp-%d", dst, (int)getpid());
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        dm_errorf(err, "%s: cannot create: %s", tmp, strerror(errno));
        close(in);
        free(tmp);
        return -1;
    }
    char buf[1 << 16];
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = dm_errorf(err, "%s: read error: %s", src, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        if (write_all(out, buf, (size_t)r) != 0) {
            rc = dm_errorf(err, "%s: write error: %s", tmp, strerror(errno));
            break;
        }
    }
    close(in);
    if (rc == 0 && fsync(out) != 0)
        rc = dm_errorf(err, "%s: fsync failed: %s", tmp, strerror(errno));
    close(out);
    if (rc == 0 && rename(tmp, dst) != 0)
        rc = dm_errorf(err, "%s: cannot rename into place: %s", dst, strerror(errno));
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

int dm_copy_dir_files(const char *src_dir, const char *dst_dir, bool (*skip)(const char *name), dm_err *err)
{
    DIR *d = opendir(src_dir);
    if (!d)
        return dm_errorf(err, "%s: cannot list: %s", src_dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.' || (skip && skip(e->d_name)))
            continue;
        char *from = dm_path_join(src_dir, e->d_name), *to = dm_path_join(dst_dir, e->d_name);
        if (!dm_is_dir(from))
            rc = dm_copy_file(from, to, err);
        free(from);
        free(to);
    }
    closedir(d);
    return rc;
}

int dm_make_dirs(const char *path)
{
    char *p = dm_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        mkdir(p, 0755);
        *s = '/';
    }
    mkdir(p, 0755);
    free(p);
    return dm_is_dir(path) ? 0 : -1;
}

int dm_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *child = dm_path_join(path, e->d_name);
        if (dm_remove_tree(child) != 0)
            rc = -1;
        free(child);
    }
    closedir(d);
    if (rmdir(path) != 0)
        rc = -1;
    return rc;
}

/* The partial directory sits beside the final one (same file system, so the
 * final rename is atomic) and is hidden by a leading dot. */
static char *partial_name(const char *final_path)
{
    char *copy = dm_strdup(final_path);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = 0;
    char *slash = strrchr(copy, '/');
    char *out;
    if (slash) {
        *slash = 0;
        out = dm_asprintf("%s/.%s.partial-%d", copy[0] ? copy : "/", slash + 1, (int)getpid());
    } else {
        out = dm_asprintf(".%s.partial-%d", copy, (int)getpid());
    }
    free(copy);
    return out;
}

int dm_outdir_begin(dm_outdir *od, const char *final_path, bool force, dm_err *err)
{
    od->final_path = NULL;
    od->tmp_path = NULL;
    if (dm_path_exists(final_path) && !force)
        return dm_errorf(err, "%s: already exists (use --force to replace it)", final_path);
    od->final_path = dm_strdup(final_path);
    od->tmp_path = partial_name(final_path);
    char *parent = dm_strdup(od->tmp_path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        dm_make_dirs(parent);   /* like mkdir -p for the output's parent */
    }
    free(parent);
    dm_remove_tree(od->tmp_path);
    if (mkdir(od->tmp_path, 0755) != 0) {
        dm_errorf(err, "%s: cannot create directory: %s", od->tmp_path, strerror(errno));
        free(od->final_path);
        free(od->tmp_path);
        od->final_path = od->tmp_path = NULL;
        return -1;
    }
    return 0;
}

int dm_outdir_commit(dm_outdir *od, dm_err *err)
{
    /* Replace an existing directory (force was checked in begin): move the old
     * one aside first, so at every instant either old or new is in place. */
    char *old = NULL;
    if (dm_path_exists(od->final_path)) {
        old = dm_asprintf("%s.old-%d", od->tmp_path, (int)getpid());
        if (rename(od->final_path, old) != 0) {
            int e = errno;
            free(old);
            return dm_errorf(err, "%s: cannot move the old output aside: %s", od->final_path, strerror(e));
        }
    }
    if (rename(od->tmp_path, od->final_path) != 0) {
        int e = errno;
        if (old)
            rename(old, od->final_path);
        free(old);
        return dm_errorf(err, "%s: cannot rename into place: %s", od->final_path, strerror(e));
    }
    if (old) {
        dm_remove_tree(old);
        free(old);
    }
    free(od->final_path);
    free(od->tmp_path);
    od->final_path = od->tmp_path = NULL;
    return 0;
}

void dm_outdir_abort(dm_outdir *od)
{
    if (od->tmp_path)
        dm_remove_tree(od->tmp_path);
    free(od->final_path);
    free(od->tmp_path);
    od->final_path = od->tmp_path = NULL;
}
