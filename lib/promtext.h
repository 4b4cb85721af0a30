/* promtext: a writer of Prometheus' text exposition format (version 0.0.4)
 * into a growing buffer. Debian 12 packages no C client library for it
 * (only prometheus-cpp, in C++), so this is the small part we need: metric
 * families with HELP and TYPE, samples with labels, and histograms.
 *
 * Invariants: label values are escaped (backslash, double quote, newline)
 * and HELP texts too (backslash, newline), so no value can end a line or a
 * label early; a histogram's buckets are written cumulative, ending with
 * le="+Inf", whose count is the _count written after _sum. Names and label
 * names are the caller's constants and are not checked. After an allocation
 * failure every call is a no-op and promtext_finish reports it. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define PROMTEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct promtext {
	char *buf; /* NUL-terminated while not NULL */
	size_t len, cap;
	int oom;
};

struct promtext_label {
	const char *name;
	const char *value; /* any bytes but NUL; escaped on output */
};

/* Buckets of one histogram series in raw units (nanoseconds, say): counts[i]
 * observations fell in (bounds[i-1], bounds[i]], counts[nbounds] above the
 * last bound. scale is raw units per exposed unit (1000000000 for seconds
 * from nanoseconds, 1 for a plain count) and must be a power of ten. */
struct promtext_histogram {
	const uint64_t *bounds;
	size_t nbounds;
	const uint64_t *counts; /* nbounds + 1 */
	uint64_t sum;
	uint64_t scale;
};

void promtext_init(struct promtext *p);
/* "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram). */
void promtext_family(struct promtext *p, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value; value is already a number's text. */
void promtext_sample(struct promtext *p, const char *name, const struct promtext_label *labels, size_t nlabels,
		     const char *value);
void promtext_sample_u64(struct promtext *p, const char *name, const struct promtext_label *labels, size_t nlabels,
			 uint64_t value);
/* name_bucket{labels,le=...} for each bound and +Inf, then name_sum and name_count. */
void promtext_histogram(struct promtext *p, const char *name, const struct promtext_label *labels, size_t nlabels,
			const struct promtext_histogram *h);
/* raw / scale as an exact decimal ("0.0025", "12"); scale a power of ten. */
void promtext_decimal(uint64_t raw, uint64_t scale, char *out, size_t outlen);

/* 0 with *out (malloc'd, NUL-terminated, caller frees) and *len, or -ENOMEM;
 * either way p is empty afterwards. */
int promtext_finish(struct promtext *p, char **out, size_t *len);
