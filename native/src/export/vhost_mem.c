/* Guest memory table of a vhost-user connection: regions mapped from the
 * front-end's fds, and translation of guest physical / front-end virtual
 * addresses with every range checked against the regions. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhost_blk.h"

int vhost_mem_gpa_iov(const struct vhost_mem *m, uint64_t gpa, uint64_t len, struct iovec *iov,
		      int max)
{
	int n = 0;

	if (gpa + len < gpa)
		return -EFAULT;
	while (len) {
		const struct vhost_region *r = NULL;
		uint64_t off, chunk;

		for (unsigned i = 0; i < m->n; i++) {
			if (gpa >= m->r[i].gpa && gpa - m->r[i].gpa < m->r[i].size) {
				r = &m->r[i];
				break;
			}
		}
		if (!r)
			return -EFAULT;
		if (n == max)
			return -E2BIG;
		off = gpa - r->gpa;
		chunk = r->size - off < len ? r->size - off : len;
		iov[n].iov_base = r->host + off;
		iov[n].iov_len = chunk;
		n++;
		gpa += chunk;
		len -= chunk;
	}
	return n;
}

void *vhost_mem_gpa_ptr(const struct vhost_mem *m, uint64_t gpa, uint64_t len)
{
	if (gpa + len < gpa)
		return NULL;
	for (unsigned i = 0; i < m->n; i++) {
		const struct vhost_region *r = &m->r[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

void *vhost_mem_uva_ptr(const struct vhost_mem *m, uint64_t uva, uint64_t len)
{
	if (uva + len < uva)
		return NULL;
	for (unsigned i = 0; i < m->n; i++) {
		const struct vhost_region *r = &m->r[i];

		if (uva >= r->uva && uva - r->uva <= r->size && len <= r->size - (uva - r->uva))
			return r->host + (uva - r->uva);
	}
	return NULL;
}

void vhost_mem_unmap(struct vhost_mem *m)
{
	for (unsigned i = 0; i < m->n; i++)
		munmap(m->r[i].map, m->r[i].map_len);
	memset(m, 0, sizeof(*m));
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

int vhost_mem_map(struct vhost_mem *m, const struct vhu_mem_table *t, const int *fds, int nfds,
		  char *err, size_t errlen)
{
	long psz = sysconf(_SC_PAGESIZE);
	unsigned i;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	if (t->nregions == 0 || t->nregions > VHU_MAX_MEM_REGIONS) {
		snprintf(err, errlen, "SET_MEM_TABLE: nregions %u is not 1-%u", t->nregions,
			 VHU_MAX_MEM_REGIONS);
		return -EINVAL;
	}
	if (nfds != (int)t->nregions) {
		snprintf(err, errlen, "SET_MEM_TABLE: %u regions but %d fds", t->nregions, nfds);
		return -EINVAL;
	}
	for (i = 0; i < t->nregions; i++) {
		const struct vhu_mem_region *g = &t->regions[i];
		struct vhost_region *r = &m->r[i];
		uint64_t align, map_len;
		struct stat sb;
		void *p;

		if (g->memory_size == 0 || g->guest_phys_addr + g->memory_size < g->guest_phys_addr ||
		    g->userspace_addr + g->memory_size < g->userspace_addr ||
		    g->mmap_offset + g->memory_size < g->mmap_offset ||
		    g->memory_size > ((uint64_t)1 << 46)) {
			snprintf(err, errlen, "SET_MEM_TABLE: region %u has a bad size or wraps", i);
			rc = -EINVAL;
			goto fail;
		}
		for (unsigned j = 0; j < i; j++) {
			if (ranges_overlap(g->guest_phys_addr, g->memory_size, m->r[j].gpa, m->r[j].size) ||
			    ranges_overlap(g->userspace_addr, g->memory_size, m->r[j].uva, m->r[j].size)) {
				snprintf(err, errlen, "SET_MEM_TABLE: region %u overlaps region %u", i, j);
				rc = -EINVAL;
				goto fail;
			}
		}
		/* A region beyond the end of its file would SIGBUS on access. */
		if (fstat(fds[i], &sb) < 0 ||
		    (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size < g->mmap_offset + g->memory_size)) {
			snprintf(err, errlen, "SET_MEM_TABLE: region %u extends past the end of its fd", i);
			rc = -EINVAL;
			goto fail;
		}
		/* Best effort: keep a sealable memfd from shrinking under us. */
		(void)fcntl(fds[i], F_ADD_SEALS, F_SEAL_SHRINK);
		align = g->mmap_offset % (uint64_t)psz;
		map_len = g->memory_size + align;
		p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fds[i],
			 (off_t)(g->mmap_offset - align));
		if (p == MAP_FAILED) {
			rc = -errno;
			snprintf(err, errlen, "SET_MEM_TABLE: mmap of region %u (%llu bytes) failed: %s", i,
				 (unsigned long long)g->memory_size, strerror(errno));
			goto fail;
		}
		r->map = p;
		r->map_len = map_len;
		r->host = (uint8_t *)p + align;
		r->gpa = g->guest_phys_addr;
		r->size = g->memory_size;
		r->uva = g->userspace_addr;
		m->n = i + 1;
	}
	return 0;
fail:
	vhost_mem_unmap(m);
	return rc;
}
