/* snv-file.h: files the daemons write (metrics, pidfile, the agent's state files).
 *
 * They may live in directories other users can write (/tmp, a shared run directory), so a
 * file is never opened by its final name: the content goes to a new temporary file in the
 * same directory (created exclusively, so a planted name or symlink makes it fail rather
 * than be followed), is synced, and is renamed over the target.  rename(2) replaces a
 * symlink at the target instead of following it, so a planted link never redirects the
 * write to another file.  A crash leaves the old file or the complete new one.
 */
#ifndef SNV_FILE_H
#define SNV_FILE_H 1

#include <stdio.h>
#include <sys/types.h>

/* Writes the content of a file to `f`; returns 0, or a negative errno to abandon it. */
typedef int snv_file_writer(FILE *f, void *aux);

/* Replaces `path` with what `writer` produces, with permissions `mode`, as described
 * above (the directory is synced after the rename).  Returns 0, or -errno (the writer's
 * own error, if it failed); on failure `path` is unchanged and no temporary file is left. */
int snv_file_write_atomic(const char *path, mode_t mode, snv_file_writer *writer, void *aux);

/* A background writer for one file, "latest content wins": the owner (one thread, e.g. an
 * event loop) hands it complete contents, and a thread of its own writes each with
 * snv_file_write_atomic(), so the owner never waits for the disk.  Contents are written in
 * the order given; one not started yet when a newer one comes is dropped for it (the file
 * only ever needs the newest), and an older one is never written after a newer one.  The
 * writer thread logs nothing: the owner collects failures with snv_file_bg_poll(). */
struct snv_file_bg;

/* Creates the writer of `path` (not NULL; copied) with permissions `mode`, and starts its
 * thread.  Returns NULL with errno set on failure. */
struct snv_file_bg *snv_file_bg_create(const char *path, mode_t mode);

/* Hands over the file's new complete content: takes ownership of `buf` (malloc'd, `len`
 * bytes, not NULL), which replaces any content not started yet. */
void snv_file_bg_put(struct snv_file_bg *bg, char *buf, size_t len);

/* Builds the new content with `writer` in memory, on the calling thread, and puts it.
 * Returns 0, or -errno (the writer's own error, or -ENOMEM): then nothing was put. */
int snv_file_bg_write(struct snv_file_bg *bg, snv_file_writer *writer, void *aux);

/* Collects the outcome of the writes done since the previous call: `*err` is the last
 * failure among them (-errno, as from snv_file_write_atomic()), or 0.  Returns 1 while a
 * content is still to be written (poll again later to learn its outcome), else 0. */
int snv_file_bg_poll(struct snv_file_bg *bg, int *err);

/* Waits until every content put so far is written (or failed; see snv_file_bg_poll()). */
void snv_file_bg_wait(struct snv_file_bg *bg);

/* Writes the content still pending, durably, then stops the thread and frees the writer.
 * A failure not collected by snv_file_bg_poll() is lost: wait and poll first to log it.
 * Accepts NULL. */
void snv_file_bg_destroy(struct snv_file_bg *bg);

/* Writes this process's ID to `path` with snv_file_write_atomic(), refusing a `path` that
 * is a symlink (-ELOOP): a pidfile names one process, never another file.  Returns 0 or
 * -errno. */
int snv_file_write_pidfile(const char *path);

#endif
