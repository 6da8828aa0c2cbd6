/* snv-ini.h: strict reading of the daemons' INI configuration files, on top of inih.
 *
 * inih reads through a fixed line buffer and would split a longer line into two (the rest
 * becoming a bogus line of its own), passes an indented line as another value of the key
 * before it, and lets a key or a whole section appear twice (the last value silently
 * wins, or two sections merge).  snv_ini_parse() feeds inih through its own reader and
 * refuses, with the line number:
 *   - a line longer than inih's buffer (it is never split);
 *   - a key repeated within one section;
 *   - a section header that appeared before (names compare with runs of blanks collapsed,
 *     so "[hypervisor  hv1]" repeats "[hypervisor hv1]").
 * A value may continue on the following lines when they are indented: they are joined to
 * it with one space, and the handler sees the whole value once (at the key's line), so a
 * long list can be written over several short lines.
 * inih calls back for keys only; snv_ini_parse_sections() also tells the caller about each
 * section header, with its line, so that a section without keys can be seen too.
 */
#ifndef SNV_INI_H
#define SNV_INI_H 1

#include <stddef.h>
#include <stdio.h>

/* inih's handler: returns nonzero to go on, 0 to stop (the handler has recorded why). */
typedef int snv_ini_handler(void *user, const char *section, const char *key, const char *value);

/* Parses `file`, or `text` when file is NULL.  *line (if not NULL) holds the number of
 * the line being handled while `handler` runs (a continued value: its key's line).
 * Returns 0 when everything was handled; the number of the offending line (> 0) when the
 * handler stopped (its reason is its own) or on a syntax error (err: "syntax error"), or
 * on one of the errors above (err: the reason, without file or line); or -ENOMEM. */
int snv_ini_parse(FILE *file, const char *text, snv_ini_handler *handler, void *user,
                  unsigned *line, char *err, size_t errlen);

/* Called once at each section header, at `line`, after the handler has seen every key before
 * it and before it sees any key of the section.  `section` is the text between the brackets
 * up to the first ']', as written (not trimmed, blanks not collapsed, not cut at inih's
 * section length).  A header without ']', or repeating an earlier one, is refused instead.
 * The parse may still fail later: act on what was seen only when it returns 0.  Returns
 * nonzero to go on, 0 to stop (the callee has recorded why). */
typedef int snv_ini_section_handler(void *user, const char *section, unsigned line);

/* snv_ini_parse(), calling `on_section` (if not NULL) at each section header as well; *line
 * holds the header's line while it runs.  Returns as snv_ini_parse(); when `on_section`
 * stops, the header's line. */
int snv_ini_parse_sections(FILE *file, const char *text, snv_ini_handler *handler,
                           snv_ini_section_handler *on_section, void *user, unsigned *line,
                           char *err, size_t errlen);

#endif
