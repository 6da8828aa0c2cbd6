/* snv-file.c: safe replacement of files the daemons write, and its background writer (see
 * snv-file.h). */
#include "snv-file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
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

/* ---------------------------------------------------------------- background writer */

struct snv_file_bg {
    char *path;
    mode_t mode;
    pthread_t thread;
    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t work;  /* to the thread: a content is pending, or stop */
    pthread_cond_t idle;  /* from the thread: a write ended */
    char *pending;        /* the next content to write, NULL: none */
    size_t pending_len;
    int writing; /* the thread is writing a content taken from pending */
    int stop;    /* destroy: write what is pending, then exit */
    int err;     /* last failure not collected by snv_file_bg_poll(), 0: none */
};

struct bg_content {
    char *buf;
    size_t len;
};

/* A short write shows in the stream's error state, which snv_file_write_atomic() checks. */
static int write_content(FILE *f, void *aux)
{
    const struct bg_content *c = aux;
    fwrite(c->buf, 1, c->len, f);
    return 0;
}

static void *bg_main(void *arg)
{
    struct snv_file_bg *bg = arg;
    pthread_mutex_lock(&bg->lock);
    for (;;) {
        while (!bg->pending && !bg->stop)
            pthread_cond_wait(&bg->work, &bg->lock);
        if (!bg->pending)
            break;
        struct bg_content c = {bg->pending, bg->pending_len};
        bg->pending = NULL;
        bg->writing = 1;
        pthread_mutex_unlock(&bg->lock);
        int err = snv_file_write_atomic(bg->path, bg->mode, write_content, &c);
        free(c.buf);
        pthread_mutex_lock(&bg->lock);
        if (err < 0)
            bg->err = err;
        bg->writing = 0;
        pthread_cond_broadcast(&bg->idle);
    }
    pthread_mutex_unlock(&bg->lock);
    return NULL;
}

struct snv_file_bg *snv_file_bg_create(const char *path, mode_t mode)
{
    struct snv_file_bg *bg = calloc(1, sizeof *bg);
    if (!bg)
        return NULL;
    bg->path = strdup(path);
    if (!bg->path) {
        free(bg);
        return NULL;
    }
    bg->mode = mode;
    pthread_mutex_init(&bg->lock, NULL);
    pthread_cond_init(&bg->work, NULL);
    pthread_cond_init(&bg->idle, NULL);
    /* Signals stay with the threads that handle them: the writer blocks them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&bg->thread, NULL, bg_main, bg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        pthread_cond_destroy(&bg->idle);
        pthread_cond_destroy(&bg->work);
        pthread_mutex_destroy(&bg->lock);
        free(bg->path);
        free(bg);
        errno = r;
        return NULL;
    }
    return bg;
}

void snv_file_bg_put(struct snv_file_bg *bg, char *buf, size_t len)
{
    pthread_mutex_lock(&bg->lock);
    char *dropped = bg->pending;
    bg->pending = buf;
    bg->pending_len = len;
    pthread_cond_signal(&bg->work);
    pthread_mutex_unlock(&bg->lock);
    free(dropped);
}

int snv_file_bg_write(struct snv_file_bg *bg, snv_file_writer *writer, void *aux)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -errno;
    int r = writer(f, aux);
    if (r == 0 && (fflush(f) != 0 || ferror(f)))
        r = -ENOMEM;
    if (fclose(f) != 0 && r == 0)
        r = -ENOMEM;
    if (r < 0) {
        free(buf);
        return r;
    }
    snv_file_bg_put(bg, buf, len);
    return 0;
}

int snv_file_bg_poll(struct snv_file_bg *bg, int *err)
{
    pthread_mutex_lock(&bg->lock);
    *err = bg->err;
    bg->err = 0;
    int busy = bg->pending || bg->writing;
    pthread_mutex_unlock(&bg->lock);
    return busy;
}

void snv_file_bg_wait(struct snv_file_bg *bg)
{
    pthread_mutex_lock(&bg->lock);
    while (bg->pending || bg->writing)
        pthread_cond_wait(&bg->idle, &bg->lock);
    pthread_mutex_unlock(&bg->lock);
}

void snv_file_bg_destroy(struct snv_file_bg *bg)
{
    if (!bg)
        return;
    pthread_mutex_lock(&bg->lock);
    bg->stop = 1;
    pthread_cond_signal(&bg->work);
    pthread_mutex_unlock(&bg->lock);
    pthread_join(bg->thread, NULL);
    pthread_cond_destroy(&bg->idle);
    pthread_cond_destroy(&bg->work);
    pthread_mutex_destroy(&bg->lock);
    free(bg->path);
    free(bg);
}
