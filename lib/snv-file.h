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

/* Writes this process's ID to `path` with snv_file_write_atomic(), refusing a `path` that
 * is a symlink (-ELOOP): a pidfile names one process, never another file.  Returns 0 or
 * -errno. */
int snv_file_write_pidfile(const char *path);

#endif
