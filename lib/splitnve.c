/* splitnve.c: library-wide facts. */
#include "splitnve.h"

const char *splitnve_version(void)
{
    return SPLITNVE_VERSION;
}
