/* errtext: the one error-code scheme (STYLE.md). Functions return 0, a
 * negative errno, or a negative code of their module. Every module's codes lie
 * in its own range, given once in the table below: module M's codes are
 * ERRTEXT_M - 1, ERRTEXT_M - 2, ... (at most 99), all below ERRTEXT_FIRST so
 * that no code reads as an errno. Each module turns its codes into text with
 * one *_strerror built on errtext_lookup: a table of {code, text}; for what is
 * not in it 0 is "success", a negative errno is strerror's text, anything else
 * "unknown error". Never returns NULL. A function that also fills a text
 * buffer (err, errlen) puts the particulars there (which setting, which file);
 * the code says what kind of failure it was. tests/test_errcodes.c checks that
 * every code is distinct and has a text. */
#pragma once
#include <stddef.h>

enum errtext_range {
	ERRTEXT_FIRST = -1000,
	/* lib/ */
	ERRTEXT_CONFIG = -1100,
	ERRTEXT_SECRET = -1200,
	ERRTEXT_MATRIXID = -1300,
	ERRTEXT_STORE = -1400,
	ERRTEXT_SYNAPSE = -1500,
	ERRTEXT_KUBE = -1600,
	/* reconcile/ */
	ERRTEXT_ROOMSTATE = -2100,
	ERRTEXT_PLANNER = -2200,
	ERRTEXT_OBSERVE = -2300,
	ERRTEXT_BOOTSTRAP = -2400,
	ERRTEXT_INGEST = -2500,
	ERRTEXT_ADOPT = -2600,
	ERRTEXT_LOOP = -2700,
	/* api/ */
	ERRTEXT_API = -3100,
	ERRTEXT_WRITER = -3200,
	ERRTEXT_CONNLIMIT = -3300,
	ERRTEXT_DEADLINE = -3400,
	ERRTEXT_AUTH = -3500,
	ERRTEXT_HTTP = -3600,
	ERRTEXT_METRICS_LISTEN = -3700,
	/* platform/ */
	ERRTEXT_KUBESOURCE = -4100,
	ERRTEXT_KUBELEASE = -4200,
};

struct errtext {
	int code;
	const char *text;
};

const char *errtext_lookup(const struct errtext *table, size_t n, int code);

#define ERRTEXT_LOOKUP(table, code) errtext_lookup((table), sizeof(table) / sizeof((table)[0]), (code))
