/* virt-managedsave: `virsh managedsave`, without virsh's job watcher.
 *
 *   virt-managedsave URI DOMAIN
 *
 * virsh 9.0 runs virDomainManagedSave on a worker thread and waits for it in a GLib main
 * loop; when the worker quits that loop before the main thread has started running it, the
 * main thread never returns, although the domain was saved (seen inside User-Mode Linux,
 * where thread start-up is slow).  The tests make the same API call here, on one thread.
 * Exit status: 0 saved, 1 libvirt's error (printed on stderr), 2 usage.
 */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>

static int fail(const char *what)
{
    const char *msg = virGetLastErrorMessage();
    fprintf(stderr, "virt-managedsave: %s: %s\n", what, msg ? msg : "unknown error");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: virt-managedsave URI DOMAIN\n");
        return 2;
    }
    virConnectPtr conn = virConnectOpen(argv[1]);
    if (!conn)
        return fail(argv[1]);
    int rc = 0;
    virDomainPtr dom = virDomainLookupByName(conn, argv[2]);
    if (!dom)
        rc = fail(argv[2]);
    else if (virDomainManagedSave(dom, 0) < 0)
        rc = fail(argv[2]);
    if (dom)
        virDomainFree(dom);
    virConnectClose(conn);
    return rc;
}
