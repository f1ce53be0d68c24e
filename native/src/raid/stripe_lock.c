/* Array-wide row locks. A fixed table of slots hashed by row: two rows that
 * share a slot serialize (harmless), one row always maps to one slot, so
 * overlapping writes from any reactors serialize. A slot's spinlock guards
 * a few instructions (never I/O); a release hands the slot to the next
 * waiter and wakes it on its own reactor. */
#include "raid.h"

static struct raid_lock_slot *slot_of(struct raid_bdev *r, uint64_t key)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ull;

	return &r->locks[(h >> 32) % RAID_LOCK_SLOTS];
}

void raid_locks_init(struct raid_bdev *r)
{
	for (unsigned i = 0; i < RAID_LOCK_SLOTS; i++) {
		pthread_spin_init(&r->locks[i].mu, PTHREAD_PROCESS_PRIVATE);
		r->locks[i].held = false;
		r->locks[i].head = r->locks[i].tail = NULL;
	}
}

void raid_locks_fini(struct raid_bdev *r)
{
	for (unsigned i = 0; i < RAID_LOCK_SLOTS; i++)
		pthread_spin_destroy(&r->locks[i].mu);
}

bool raid_lock_try(struct raid_bdev *r, struct raid_lock_waiter *w)
{
	struct raid_lock_slot *s = slot_of(r, w->key);
	bool got;

	pthread_spin_lock(&s->mu);
	got = !s->held;
	if (got) {
		s->held = true;
		s->key = w->key;
	} else {
		w->next = NULL;
		if (s->tail)
			s->tail->next = w;
		else
			s->head = w;
		s->tail = w;
	}
	pthread_spin_unlock(&s->mu);
	return got;
}

static void waiter_run(struct fb_deferred *d)
{
	struct raid_lock_waiter *w = (struct raid_lock_waiter *)((char *)d -
		offsetof(struct raid_lock_waiter, d));

	w->granted(w);
}

static void waiter_msg(void *arg)
{
	struct raid_lock_waiter *w = arg;

	w->granted(w);
}

void raid_lock_release(struct raid_bdev *r, uint64_t key)
{
	struct raid_lock_slot *s = slot_of(r, key);
	struct raid_lock_waiter *w;

	pthread_spin_lock(&s->mu);
	w = s->head;
	if (w) {
		s->head = w->next;
		if (!s->head)
			s->tail = NULL;
		s->key = w->key;  /* handed over: stays held */
	} else {
		s->held = false;
	}
	pthread_spin_unlock(&s->mu);
	if (!w)
		return;
	/* Never run the next holder inside this call: its I/O would nest in
	 * the releaser's completion. */
	if (w->r == fb_reactor_current()) {
		w->d.fn = waiter_run;
		fb_reactor_defer(w->r, &w->d);
	} else {
		fb_reactor_send(w->r, waiter_msg, w);
	}
}
