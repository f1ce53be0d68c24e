/* Growable string for JSON dumps. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/bdev_module.h"

static int strbuf_reserve(struct fb_strbuf *sb, size_t extra)
{
	size_t need = sb->len + extra + 1;
	size_t cap = sb->cap ? sb->cap : 128;
	char *nb;

	if (need <= sb->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	nb = realloc(sb->buf, cap);
	if (!nb)
		return -ENOMEM;
	sb->buf = nb;
	sb->cap = cap;
	return 0;
}

int fb_strbuf_printf(struct fb_strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	rc = strbuf_reserve(sb, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
	return 0;
}

int fb_strbuf_json_str(struct fb_strbuf *sb, const char *s)
{
	int rc = fb_strbuf_printf(sb, "\"");

	for (const unsigned char *p = (const unsigned char *)s; !rc && *p; p++) {
		switch (*p) {
		case '"': rc = fb_strbuf_printf(sb, "\\\""); break;
		case '\\': rc = fb_strbuf_printf(sb, "\\\\"); break;
		case '\n': rc = fb_strbuf_printf(sb, "\\n"); break;
		case '\r': rc = fb_strbuf_printf(sb, "\\r"); break;
		case '\t': rc = fb_strbuf_printf(sb, "\\t"); break;
		default:
			if (*p < 0x20)
				rc = fb_strbuf_printf(sb, "\\u%04x", *p);
			else
				rc = fb_strbuf_printf(sb, "%c", *p);
		}
	}
	if (!rc)
		rc = fb_strbuf_printf(sb, "\"");
	return rc;
}

void fb_strbuf_free(struct fb_strbuf *sb)
{
	free(sb->buf);
	sb->buf = NULL;
	sb->len = sb->cap = 0;
}
