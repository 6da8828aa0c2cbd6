/* backend-provider.h: how nnve-daemon programs the switch's dataplane.
 *
 * The state machines call these operations on every change; a backend turns them into
 * switch configuration (the Linux backend: bridge VLAN membership, VLAN-to-VNI map, FDB
 * entries over netlink).  Contract for every backend:
 *  - Idempotent: adding what is there, or removing what is absent, succeeds and changes
 *    nothing.  A backend keeps (or reads back) what it installed so it can tell.
 *  - Reconcile at start-up: nnve-daemon calls reconcile_begin(), then declares the whole
 *    desired state (loaded from disk) through the normal add/associate/activate operations,
 *    then reconcile_end().  The backend leaves alone what already matches, installs what is
 *    missing, and at reconcile_end() removes what it had installed that was not declared.
 *    A correct dataplane is never torn down and rebuilt by a restart.
 *  - Failures return < 0 with a logged reason; the control plane keeps its state (the next
 *    reconcile repairs the dataplane) and counts the failure.
 *  - Only entries the daemon installed are ever removed (an entry carries the port and tag
 *    it was installed with, so removal needs no lookup in the control-plane state).
 */
#ifndef NNVE_BACKEND_PROVIDER_H
#define NNVE_BACKEND_PROVIDER_H 1

#include <stddef.h>
#include <stdint.h>

#include "sncp-msg.h"

/* A VN as the control plane knows it: by ID, by name, or both. */
struct nnve_vn {
    uint32_t id;
    uint8_t has_id;
    char name[SNCP_MAX_VN_NAME_LEN + 1]; /* "" when unknown */
};

struct nnve_linux_config;

struct nnve_backend_config {
    const char *journal;  /* none backend: append one line per operation to this file */
    const char *fdb_file; /* none backend: "MAC PORT" lines answering lookup_mac */
    const struct nnve_linux_config *linux_cfg; /* linux backend; NULL: its defaults */
};

struct nnve_backend;

struct nnve_backend_class {
    const char *name; /* "none", "linux" */

    /* Opens the backend.  Returns 0 and *out, or < 0 with a logged reason. */
    int (*create)(const struct nnve_backend_config *cfg, struct nnve_backend **out);
    void (*destroy)(struct nnve_backend *b);

    int (*reconcile_begin)(struct nnve_backend *b);
    int (*reconcile_end)(struct nnve_backend *b);

    /* The VN (its tag on this port, and its VN ID for the overlay) is on `port`: the port
     * carries `tag` tagged, mapped to the VN. */
    int (*vn_add)(struct nnve_backend *b, const char *port, uint16_t tag, const struct nnve_vn *vn);
    int (*vn_remove)(struct nnve_backend *b, const char *port, uint16_t tag,
                     const struct nnve_vn *vn);

    /* TSI instance operations.  associate: resources reserved, no traffic; activate: the
     * addresses forward (FDB/neighbour entries toward `port` on `tag`); deactivate: traffic
     * stops, reservation kept; deassociate: everything about the instance removed (from
     * either state); update: the addresses of an instance changed (state unchanged).
     * activate also applies to an instance the backend does not have yet (start-up replay
     * and port moves declare an Activated instance with activate alone). */
    int (*tsi_associate)(struct nnve_backend *b, const char *port, uint16_t tag,
                         const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                         const struct sncp_addr *addrs, unsigned n_addrs);
    int (*tsi_activate)(struct nnve_backend *b, const char *port, uint16_t tag,
                        const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                        const struct sncp_addr *addrs, unsigned n_addrs);
    int (*tsi_deactivate)(struct nnve_backend *b, const char *port, uint16_t tag,
                          const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                          const struct sncp_addr *addrs, unsigned n_addrs);
    int (*tsi_deassociate)(struct nnve_backend *b, const char *port, uint16_t tag,
                           const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                           const struct sncp_addr *addrs, unsigned n_addrs);
    int (*tsi_update)(struct nnve_backend *b, const char *port, uint16_t tag,
                      const struct nnve_vn *vn, const struct sncp_tsi_id *tsi,
                      const struct sncp_addr *addrs, unsigned n_addrs);

    /* The switch port behind `mac` in its forwarding table (learned port, RFC 8394 §3.2).
     * Returns 0 with the name in port[0..cap), -ENOENT when unknown, or < 0. */
    int (*lookup_mac)(struct nnve_backend *b, const uint8_t mac[6], char *port, size_t cap);
};

/* Every backend starts with this. */
struct nnve_backend {
    const struct nnve_backend_class *cls;
    uint64_t ops;    /* operations called */
    uint64_t errors; /* operations that failed */
};

extern const struct nnve_backend_class nnve_backend_none_class;

/* Finds a backend class by name; NULL if unknown. */
const struct nnve_backend_class *nnve_backend_class_find(const char *name);

/* Opens backend `name`.  Returns 0 and *out, -ENOENT for an unknown name, or its error. */
int nnve_backend_open(const char *name, const struct nnve_backend_config *cfg,
                      struct nnve_backend **out);
/* Accepts NULL. */
void nnve_backend_close(struct nnve_backend *b);

/* "5000" or "blue" (the ID when known). */
const char *nnve_vn_format(const struct nnve_vn *vn, char *buf, size_t cap);

#endif
