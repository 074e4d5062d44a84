/*
 * wp_ui_page.h - the static text of the wallet's web UI (wp_ui_page.c):
 * HTML templates, the style sheet and the scripts, served by wp_ui.c.
 *
 * All are NUL-terminated, read-only and live for the whole process.
 * Templates contain "{{name}}" placeholders that wp_ui.c replaces with
 * HTML-escaped values; the scripts and the style sheet are served as they
 * are, from the wallet's own origin, so the Content-Security-Policy can stay
 * "default-src 'self'" without inline script or style.
 */
#ifndef WP_UI_PAGE_H
#define WP_UI_PAGE_H

/* The main page. Placeholders: token. */
extern const char wp_ui_index_html[];
/* The confirmation page for one held payment. Placeholders: token, id, site,
 * url, method, price, reason, created, return (the URL to load after Pay, or
 * empty when the held request cannot be repeated by navigation). */
extern const char wp_ui_confirm_html[];
/* A small error page. Placeholders: title, message. */
extern const char wp_ui_error_html[];
/* /ui.css, shared by all pages. */
extern const char wp_ui_css[];
/* /ui.js: the main page's script (API calls, refresh every 5 s). */
extern const char wp_ui_js[];
/* /confirm.js: the confirmation page's Pay and Decline buttons. */
extern const char wp_ui_confirm_js[];

#endif
