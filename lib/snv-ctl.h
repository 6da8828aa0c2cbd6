/* snv-ctl.h: the control socket shared by both daemons and their ctl tools.
 *
 * A Unix stream socket.  The client sends one request line, a JSON array of strings
 * (["tsi/show"] or ["tsi/deactivate", "<tsi>", "192.0.2.7"]), and the server answers with
 * one JSON object line, {"status":0,"result":...} or {"status":N,"error":"text"}, and
 * closes.  Handlers are registered by the module that owns the state and always produce
 * JSON; ctl tools render arrays of objects as tables unless --json is given.  Handlers may
 * answer later (the hook's synchronous "prepare" waits for the nNVE): keep the request and
 * reply when ready; a request whose client went away is still replied to safely.
 */
#ifndef SNV_CTL_H
#define SNV_CTL_H 1

#include <stdio.h>

#include <jansson.h>
#include <uv.h>

/* Exit statuses of ctl tools, also the "status" of a reply. */
enum snv_ctl_status {
    SNV_CTL_OK = 0,
    SNV_CTL_FAILED = 1,     /* the command ran and failed (e.g. the nNVE refused) */
    SNV_CTL_USAGE = 2,      /* bad command or arguments */
    SNV_CTL_NOT_FOUND = 3,  /* the named object does not exist */
    SNV_CTL_UNREACHABLE = 4,/* (client side) the daemon's socket could not be reached */
    SNV_CTL_TIMEOUT = 5,    /* (client side or handler) no answer in time */
};

struct snv_ctl_server;
struct snv_ctl_req;

typedef void snv_ctl_handler(struct snv_ctl_req *req, int argc, const char *const argv[],
                             void *aux);

/* Listens on `path` (an existing stale socket is replaced; mode 0660).  Built-in commands:
 * "help" (list of commands with usage), "version", "log/set LEVEL", "log/get".
 * Returns 0 and *out, or -errno. */
int snv_ctl_server_create(uv_loop_t *loop, const char *path, struct snv_ctl_server **out);
/* Closes the listener and every open request (their handlers' pending replies are
 * dropped) and unlinks the socket; handles finish closing on the next loop turns. */
void snv_ctl_server_destroy(struct snv_ctl_server *s);

/* Raises the longest request line the server accepts (default and minimum 64 KiB) to
 * `bytes`, for commands that carry documents (the libvirt hook's domain XML).  Buffers
 * past 64 KiB come out of a budget of 2 * `bytes` shared by all open requests: a request
 * that would exceed it is refused (status 1, "retry") rather than buffered. */
void snv_ctl_server_set_line_max(struct snv_ctl_server *s, size_t bytes);

/* Registers `command` (e.g. "vn/show") taking min_args..max_args arguments (max -1: any).
 * `usage` is shown by "help".  Returns 0 or -EEXIST / -ENOMEM. */
int snv_ctl_register(struct snv_ctl_server *s, const char *command, const char *usage,
                     int min_args, int max_args, snv_ctl_handler *handler, void *aux);

/* Replies with status 0 and `result` (ownership taken; NULL means JSON null). */
void snv_ctl_reply_ok(struct snv_ctl_req *req, json_t *result);
/* Replies with a failure status and a formatted error text. */
void snv_ctl_reply_error(struct snv_ctl_req *req, enum snv_ctl_status status, const char *fmt,
                         ...) __attribute__((format(printf, 3, 4)));

/* Client: sends argv and waits up to timeout_ms for the reply.  Returns the reply's status
 * (>= 0) with *result set (caller decrefs; the error text as a JSON string when status != 0),
 * or SNV_CTL_UNREACHABLE / SNV_CTL_TIMEOUT with the reason in err. */
int snv_ctl_call(const char *path, int argc, const char *const argv[], int timeout_ms,
                 json_t **result, char *err, size_t errlen);

/* Prints a result for people: an array of objects as an aligned table (columns in the
 * first object's key order, arrays joined with ","), an object as "key: value" lines, a
 * string as itself; with json != 0, pretty JSON. */
void snv_ctl_print(FILE *out, const json_t *result, int json);

/* A ctl tool's whole main(): parses [-s SOCKET] [--json] [-t SECONDS] [-h] and the words,
 * maps them through `words` (e.g. {"show vns", "vn/show"}: the longest matching prefix of
 * words gives the command; remaining words are its arguments; unmapped words are passed as
 * a raw command), calls the daemon and prints.  A reply {"items": [...], "next": CURSOR} is one page
 * of a long listing: the tool asks for the next pages (the same words plus "after
 * CURSOR", each request bounded by the server) and prints all items as one array, unless
 * the words hold "limit" or "after" (one page asked for: printed with its "next").  `help` is the text of --help.  Returns the
 * process exit status. */
struct snv_ctl_word_map {
    const char *words;
    const char *command;
};
int snv_ctl_tool_main(int argc, char **argv, const char *default_socket,
                      const struct snv_ctl_word_map *words, const char *help);

#endif
