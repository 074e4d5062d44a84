/*
 * wp_config.h - wp_config.c's entry point besides wp.h's: parsing
 * configuration text held in memory, the same way wp_config_load() parses a
 * file. For the unit tests and tests/fuzz/fuzz_config.c; the daemon loads
 * files with wp_config_load().
 */
#ifndef WP_CONFIG_H
#define WP_CONFIG_H

#include <stddef.h>
#include "wp.h"

/* Applies the "Key value" lines of buf (len bytes, need not be
 * NUL-terminated) to c as wp_config_load() would for a file called name
 * (used in messages: "name:line: message"). Lines longer than 4096
 * characters are refused. 0, or -1 with err set; on error c may hold the
 * lines before the bad one. */
int wp_config_parse_buffer(wp_config *c, const char *name, const char *buf, size_t len,
                           char *err, size_t errlen);

#endif
