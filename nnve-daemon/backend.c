/* backend.c: the registry of dataplane backends (see backend-provider.h). */
#include "backend-provider.h"

#include "backend-linux.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct nnve_backend_class *const classes[] = {
    &nnve_backend_none_class,
    &nnve_backend_linux_class,
};

const struct nnve_backend_class *nnve_backend_class_find(const char *name)
{
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (!strcmp(classes[i]->name, name))
            return classes[i];
    return NULL;
}

int nnve_backend_open(const char *name, const struct nnve_backend_config *cfg,
                      struct nnve_backend **out)
{
    const struct nnve_backend_class *cls = nnve_backend_class_find(name);
    if (!cls)
        return -ENOENT;
    return cls->create(cfg, out);
}

void nnve_backend_close(struct nnve_backend *b)
{
    if (b)
        b->cls->destroy(b);
}

const char *nnve_vn_format(const struct nnve_vn *vn, char *buf, size_t cap)
{
    if (vn->has_id)
        snprintf(buf, cap, "%u", (unsigned)vn->id);
    else
        snprintf(buf, cap, "%s", vn->name);
    return buf;
}
