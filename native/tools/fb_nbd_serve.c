/* fb_nbd_serve: a small NBD server on the FlexBSO engine, for development
 * and the real-client tests in test/nbd/.
 *
 *   fb_nbd_serve [--reactors N] [--poll-us N] [--nbd-mem-limit BYTES]
 *                [--nbd-stall-timeout-ms MS] [--nbd-payload-timeout-ms MS]
 *                [--malloc NAME:SIZE[:BS]] [--null NAME:SIZE[:BS]]
 *                [--file NAME:PATH[:BS]] [--error BASE]   (creates EE_BASE)
 *                [--rpc METHOD:PARAMS_JSON]   (any engine method, e.g.
 *                 bdev_set_qos_limit:{"name":"M0","rw_ios_per_sec":5000})
 *                --listen unix:PATH|tcp:HOST:PORT [--tls-psk FILE | --tls-cert FILE
 *                 --tls-key FILE [--tls-ca FILE]] [--tls-required]
 *                 --export NAME:BDEV[:ro] ...
 *                [--vhost-dir DIR --vhost CTRLR:BDEV[:ro] ...]
 *                [--ready-file PATH]
 *
 * --vhost serves BDEV as a vhost-user-blk controller on DIR/CTRLR (the most
 * recent --vhost-dir), for tools/fb_vhost and QEMU; at least one --export
 * or --vhost is needed.
 * Each --export goes on the most recent --listen, with the --tls-* options
 * given since that --listen (NBD_OPT_STARTTLS; see fb_nbd_export_opts). SIZE takes K/M/G/T
 * suffixes (powers of 1024), as does --nbd-mem-limit (engine-wide NBD buffer
 * memory; default min(1 GiB, RAM/4)). --nbd-stall-timeout-ms: under memory
 * pressure, a client that takes none of its replies for this long is
 * disconnected (default 10000). --nbd-payload-timeout-ms: a write whose
 * payload has not fully arrived this long after its header closes its
 * connection (default 30000). Runs until SIGTERM or SIGINT; SIGUSR1 removes
 * every export (clients are drained and disconnected), as a test hook.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbso/flexbso.h"
#include "flexbso/json.h"
#include "tool_bdev.h"


#define MAX_EXPORTS 64

static void usage(void)
{
	fprintf(stderr,
		"usage: fb_nbd_serve [--reactors N] [--poll-us N] [--nbd-mem-limit BYTES]\n"
		"         [--nbd-stall-timeout-ms MS] [--nbd-payload-timeout-ms MS]\n"
		"         [--malloc NAME:SIZE[:BS]] [--null NAME:SIZE[:BS]] [--file NAME:PATH[:BS]]\n"
		"         [--error BASE] [--rpc METHOD:PARAMS_JSON]\n"
		"         --listen unix:PATH|tcp:HOST:PORT [--tls-psk FILE | --tls-cert FILE --tls-key FILE\n"
		"         [--tls-ca FILE]] [--tls-required] --export NAME:BDEV[:ro] ...\n"
		"         [--vhost-dir DIR --vhost CTRLR:BDEV[:ro] ...]\n"
		"         [--ready-file PATH] [--verbose]\n");
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* Splits "a:b[:c]" in place; returns the number of fields (max 3). */
static int split3(char *s, char **f)
{
	int n = 1;
	char *p;

	f[0] = s;
	f[1] = f[2] = NULL;
	while (n < 3 && (p = strchr(f[n - 1], ':'))) {
		*p = 0;
		f[n++] = p + 1;
	}
	return n;
}

static enum fb_log_level g_level = FB_LOG_INFO;

static void log_stderr(enum fb_log_level level, const char *msg, void *arg)
{
	static const char *names[] = { "error", "warn", "info", "debug" };

	(void)arg;
	if (level <= g_level)
		fprintf(stderr, "fb_nbd_serve: %s: %s\n", names[level], msg);
}

static int add_bdev(struct fb_engine *e, const char *kind, char *spec, struct fb_err *err)
{
	char *f[3];
	int n = split3(spec, f);
	uint64_t size = 0, bs = 512;

	if (n >= 3 && (parse_size(f[2], &bs) || bs == 0 || bs > UINT32_MAX)) {
		snprintf(err->msg, sizeof(err->msg), "--%s %s: bad block size %s", kind, f[0], f[2]);
		return -EINVAL;
	}
	if (strcmp(kind, "file") == 0) {
		if (n < 2) {
			snprintf(err->msg, sizeof(err->msg), "--file needs NAME:PATH");
			return -EINVAL;
		}
		return create_bdev(e, "bdev_uring_create", f[0], f[1], 0, n >= 3 ? (uint32_t)bs : 0, err);
	}
	if (n < 2 || parse_size(f[1], &size) || size < bs || size % bs) {
		snprintf(err->msg, sizeof(err->msg), "--%s needs NAME:SIZE[:BS] with SIZE a multiple of BS",
			 kind);
		return -EINVAL;
	}
	return create_bdev(e, strcmp(kind, "malloc") == 0 ? "bdev_malloc_create" : "bdev_null_create",
			   f[0], NULL, size / bs, (uint32_t)bs, err);
}

int main(int argc, char **argv)
{
	struct fb_engine_opts opts;
	struct fb_engine *e = NULL;
	struct fb_err err = { { 0 } };
	const char *listen = NULL, *ready = NULL, *vhost_dir = NULL;
	int nvhost = 0;
	struct fb_nbd_export_opts xo;
	char *names[MAX_EXPORTS];
	int nexports = 0, i, sig, rc = 1;
	sigset_t set;

	fb_engine_opts_init(&opts);
	fb_nbd_export_opts_init(&xo);
	opts.log = log_stderr;
	/* Signals are taken by sigwait below; reactors inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* First pass: engine options. */
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--reactors") == 0 && i + 1 < argc)
			opts.reactors = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--poll-us") == 0 && i + 1 < argc)
			opts.poll_us = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--nbd-mem-limit") == 0 && i + 1 < argc) {
			uint64_t v;

			if (parse_size(argv[++i], &v) || v == 0) {
				fprintf(stderr, "fb_nbd_serve: --nbd-mem-limit needs a size > 0\n");
				return 1;
			}
			opts.nbd_mem_limit = (size_t)v;
		} else if (strcmp(argv[i], "--nbd-stall-timeout-ms") == 0 && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);

			if (*end || v == 0 || v > 3600000ul) {
				fprintf(stderr, "fb_nbd_serve: --nbd-stall-timeout-ms needs 1..3600000\n");
				return 1;
			}
			opts.nbd_stall_timeout_ms = (unsigned)v;
		} else if (strcmp(argv[i], "--nbd-payload-timeout-ms") == 0 && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);

			if (*end || v == 0 || v > 3600000ul) {
				fprintf(stderr, "fb_nbd_serve: --nbd-payload-timeout-ms needs 1..3600000\n");
				return 1;
			}
			opts.nbd_payload_timeout_ms = (unsigned)v;
		} else if (strcmp(argv[i], "--verbose") == 0)
			g_level = FB_LOG_DEBUG;
		else if (strcmp(argv[i], "--help") == 0) {
			usage();
			return 0;
		}
	}
	if (fb_engine_create(&opts, &e, &err)) {
		fprintf(stderr, "fb_nbd_serve: %s\n", err.msg);
		return 1;
	}
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--reactors") == 0 || strcmp(a, "--poll-us") == 0 ||
		    strcmp(a, "--nbd-mem-limit") == 0 || strcmp(a, "--nbd-stall-timeout-ms") == 0 ||
		    strcmp(a, "--nbd-payload-timeout-ms") == 0) {
			i++;
			continue;
		}
		if (strcmp(a, "--verbose") == 0)
			continue;
		if (strcmp(a, "--tls-required") == 0) {
			xo.tls_required = true;
			continue;
		}
		if (!v) {
			usage();
			goto out;
		}
		i++;
		if (strcmp(a, "--malloc") == 0 || strcmp(a, "--null") == 0 || strcmp(a, "--file") == 0) {
			if (add_bdev(e, a + 2, v, &err)) {
				fprintf(stderr, "fb_nbd_serve: %s\n", err.msg);
				goto out;
			}
		} else if (strcmp(a, "--error") == 0) {
			if (create_bdev(e, "bdev_error_create", v, NULL, 0, 0, &err)) {
				fprintf(stderr, "fb_nbd_serve: %s\n", err.msg);
				goto out;
			}
		} else if (strcmp(a, "--rpc") == 0) {
			char *colon = strchr(v, ':'), *res = NULL;

			if (colon)
				*colon = '\0';
			if (fb_rpc_call(e, v, colon ? colon + 1 : NULL, &res, &err)) {
				fprintf(stderr, "fb_nbd_serve: %s: %s\n", v, err.msg);
				goto out;
			}
			free(res);
		} else if (strcmp(a, "--listen") == 0) {
			listen = v;
			fb_nbd_export_opts_init(&xo);
		} else if (strcmp(a, "--tls-psk") == 0) {
			xo.tls_psk_file = v;
		} else if (strcmp(a, "--tls-cert") == 0) {
			xo.tls_cert_file = v;
		} else if (strcmp(a, "--tls-key") == 0) {
			xo.tls_key_file = v;
		} else if (strcmp(a, "--tls-ca") == 0) {
			xo.tls_ca_file = v;
		} else if (strcmp(a, "--ready-file") == 0) {
			ready = v;
		} else if (strcmp(a, "--vhost-dir") == 0) {
			vhost_dir = v;
		} else if (strcmp(a, "--vhost") == 0) {
			struct fb_vhost_blk_opts vo;
			char *f[3];
			int n = split3(v, f);

			if (!vhost_dir || n < 2) {
				fprintf(stderr, "fb_nbd_serve: --vhost CTRLR:BDEV[:ro] after a --vhost-dir\n");
				goto out;
			}
			fb_vhost_blk_opts_init(&vo);
			vo.readonly = n == 3 && strcmp(f[2], "ro") == 0;
			if (fb_vhost_blk_controller_create(e, f[0], f[1], vhost_dir, &vo, &err)) {
				fprintf(stderr, "fb_nbd_serve: %s\n", err.msg);
				goto out;
			}
			nvhost++;
		} else if (strcmp(a, "--export") == 0) {
			char *f[3];
			int n = split3(v, f);

			if (!listen || n < 2 || nexports == MAX_EXPORTS) {
				fprintf(stderr, "fb_nbd_serve: --export NAME:BDEV[:ro] after a --listen\n");
				goto out;
			}
			xo.readonly = n == 3 && strcmp(f[2], "ro") == 0;
			if (fb_nbd_export_create(e, f[0], f[1], listen, &xo, &err)) {
				fprintf(stderr, "fb_nbd_serve: %s\n", err.msg);
				goto out;
			}
			names[nexports++] = f[0];
		} else {
			usage();
			goto out;
		}
	}
	if (nexports == 0 && nvhost == 0) {
		usage();
		goto out;
	}
	if (ready) {
		FILE *f = fopen(ready, "w");

		if (f)
			fclose(f);
	}
	fprintf(stderr, "fb_nbd_serve: ready\n");
	for (;;) {
		if (sigwait(&set, &sig))
			continue;
		if (sig != SIGUSR1)
			break;
		for (i = 0; i < nexports; i++) {
			if (!names[i])
				continue;
			if (fb_nbd_export_remove(e, names[i], &err))
				fprintf(stderr, "fb_nbd_serve: %s\n", err.msg);
			names[i] = NULL;
		}
		fprintf(stderr, "fb_nbd_serve: exports removed\n");
	}
	rc = 0;
out:
	fb_engine_destroy(e);
	return rc;
}
