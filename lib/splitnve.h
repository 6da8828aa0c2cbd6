/* splitnve.h: the public interface of libsplitnve, the SNCP protocol library shared by
 * nnve-daemon and tnve-agent.  Include this one header; the version macros below say
 * which interface set it is.  The ABI follows the shared library's major version. */
#ifndef SPLITNVE_H
#define SPLITNVE_H 1

#define SPLITNVE_API_MAJOR 1
#define SPLITNVE_API_MINOR 0

#include "sncp-error.h"
#include "sncp-msg.h"
#include "sncp-frame.h"
#include "sncp-tls.h"
#include "sncp-session.h"
#include "sncp-conn.h"
#include "snv-log.h"
#include "snv-ctl.h"

/* The library's release version, e.g. "0.1.0". */
const char *splitnve_version(void);

#endif
