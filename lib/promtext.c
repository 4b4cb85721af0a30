/* promtext: Prometheus text exposition (see promtext.h). Everything goes
 * through put(), which grows the buffer and records a failure once. */
#include "promtext.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void promtext_init(struct promtext *p)
{
	memset(p, 0, sizeof(*p));
}

static void put(struct promtext *p, const char *s, size_t n)
{
	char *nb;
	size_t cap;

	if (p->oom)
		return;
	if (p->len + n + 1 > p->cap) {
		cap = p->cap ? p->cap : 4096;
		while (cap < p->len + n + 1)
			cap *= 2;
		if ((nb = realloc(p->buf, cap)) == NULL) {
			p->oom = 1;
			return;
		}
		p->buf = nb;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = '\0';
}

static void puts_(struct promtext *p, const char *s)
{
	put(p, s, strlen(s));
}

/* quote: also escape '"' (label values; HELP keeps its quotes). */
static void put_escaped(struct promtext *p, const char *s, int quote)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;

		if (esc == NULL)
			continue;
		put(p, run, (size_t)(s - run));
		puts_(p, esc);
		run = s + 1;
	}
	put(p, run, (size_t)(s - run));
}

void promtext_family(struct promtext *p, const char *name, const char *type, const char *help)
{
	puts_(p, "# HELP ");
	puts_(p, name);
	puts_(p, " ");
	put_escaped(p, help, 0);
	puts_(p, "\n# TYPE ");
	puts_(p, name);
	puts_(p, " ");
	puts_(p, type);
	puts_(p, "\n");
}

/* name{labels[,le="le"]} value; le may be NULL. */
static void line(struct promtext *p, const char *name, const char *suffix, const struct promtext_label *labels,
		 size_t nlabels, const char *le, const char *value)
{
	puts_(p, name);
	puts_(p, suffix);
	if (nlabels > 0 || le != NULL) {
		puts_(p, "{");
		for (size_t i = 0; i < nlabels; i++) {
			if (i > 0)
				puts_(p, ",");
			puts_(p, labels[i].name);
			puts_(p, "=\"");
			put_escaped(p, labels[i].value, 1);
			puts_(p, "\"");
		}
		if (le != NULL) {
			puts_(p, nlabels > 0 ? ",le=\"" : "le=\"");
			puts_(p, le);
			puts_(p, "\"");
		}
		puts_(p, "}");
	}
	puts_(p, " ");
	puts_(p, value);
	puts_(p, "\n");
}

void promtext_sample(struct promtext *p, const char *name, const struct promtext_label *labels, size_t nlabels,
		     const char *value)
{
	line(p, name, "", labels, nlabels, NULL, value);
}

void promtext_sample_u64(struct promtext *p, const char *name, const struct promtext_label *labels, size_t nlabels,
			 uint64_t value)
{
	char v[24];

	snprintf(v, sizeof(v), "%" PRIu64, value);
	line(p, name, "", labels, nlabels, NULL, v);
}

void promtext_decimal(uint64_t raw, uint64_t scale, char *out, size_t outlen)
{
	char frac[24];
	size_t digits = 0, n;

	for (uint64_t s = scale; s > 1; s /= 10)
		digits++;
	if (digits == 0 || digits > 19) {
		snprintf(out, outlen, "%" PRIu64, raw);
		return;
	}
	/* the fraction with its leading zeros: 2500000 of 10^9 -> "002500000" */
	snprintf(frac, sizeof(frac), "%020" PRIu64, raw % scale);
	snprintf(out, outlen, "%" PRIu64 ".%s", raw / scale, frac + 20 - digits);
	/* "0.002500000" -> "0.0025", "1.000000000" -> "1" */
	n = strlen(out);
	while (n > 0 && out[n - 1] == '0')
		out[--n] = '\0';
	if (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
}

void promtext_histogram(struct promtext *p, const char *name, const struct promtext_label *labels, size_t nlabels,
			const struct promtext_histogram *h)
{
	uint64_t total = 0;
	char le[32], v[48];

	for (size_t i = 0; i <= h->nbounds; i++) {
		total += h->counts[i];
		if (i < h->nbounds)
			promtext_decimal(h->bounds[i], h->scale, le, sizeof(le));
		else
			snprintf(le, sizeof(le), "+Inf");
		snprintf(v, sizeof(v), "%" PRIu64, total);
		line(p, name, "_bucket", labels, nlabels, le, v);
	}
	promtext_decimal(h->sum, h->scale, v, sizeof(v));
	line(p, name, "_sum", labels, nlabels, NULL, v);
	snprintf(v, sizeof(v), "%" PRIu64, total);
	line(p, name, "_count", labels, nlabels, NULL, v);
}

int promtext_finish(struct promtext *p, char **out, size_t *len)
{
	int rc = p->oom || p->buf == NULL ? -ENOMEM : 0;

	*out = NULL;
	*len = 0;
	if (rc == 0) {
		*out = p->buf;
		*len = p->len;
	} else {
		free(p->buf);
	}
	promtext_init(p);
	return rc;
}
