/* snv-file.c: safe replacement of files the daemons write (see snv-file.h). */
#include "snv-file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Syncs the directory holding `path`, so that the rename itself is durable. */
static int sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];

    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) >= sizeof dir)
        return -ENAMETOOLONG;
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int snv_file_write_atomic(const char *path, mode_t mode, snv_file_writer *writer, void *aux)
{
    char tmp[PATH_MAX];

    if (!path || !*path)
        return -EINVAL;
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    /* mkostemp opens with O_CREAT|O_EXCL: an existing name, symlink or not, is never
     * opened, another random name is tried instead. */
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = 0;
    FILE *f = NULL;
    if (fchmod(fd, mode) < 0) {
        r = -errno;
        close(fd);
        goto fail;
    }
    f = fdopen(fd, "w");
    if (!f) {
        r = -errno;
        close(fd);
        goto fail;
    }
    r = writer(f, aux);
    if (r == 0 && (fflush(f) != 0 || ferror(f)))
        r = errno ? -errno : -EIO;
    if (r == 0 && fsync(fileno(f)) < 0)
        r = -errno;
    if (fclose(f) != 0 && r == 0)
        r = errno ? -errno : -EIO;
    if (r < 0)
        goto fail;
    if (rename(tmp, path) < 0) {
        r = -errno;
        goto fail;
    }
    return sync_dir(path);
fail:
    unlink(tmp);
    return r < 0 ? r : -EIO;
}

static int write_pid(FILE *f, void *aux)
{
    (void)aux;
    return fprintf(f, "%ld\n", (long)getpid()) < 0 ? -EIO : 0;
}

int snv_file_write_pidfile(const char *path)
{
    struct stat st;

    if (path && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
        return -ELOOP;
    return snv_file_write_atomic(path, 0644, write_pid, NULL);
}
