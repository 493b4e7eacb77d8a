// SPDX-License-Identifier: GPL-2.0-only
/*
 * What the two per-byte costs of an ordinary kexec reboot are on this CPU,
 * measured natively (not in a guest), for the cover letter's motivation:
 *
 *  relocation  the copy from source pages to destination pages at reboot,
 *              one 4 KiB page at a time, source and destination pages
 *              scattered as the page allocator hands them out:
 *                copy   one copy per page (arm64 since 5.13, with the MMU
 *                       and caches on)
 *                swap   three copies per page through a swap page (x86_64's
 *                       relocate_kernel swap_pages, which also serves
 *                       kexec jump)
 *  digest      sha256 of the segments, as kexec_file_load()'s purgatory
 *              computes it before the jump: plain C, one CPU, no SIMD and no
 *              SHA instructions (the purgatory is built without them).
 *              sha256-plain.c is written from FIPS 180-4 in the same style
 *              (32-bit words, 64 rounds) and built with the kernel's
 *              no-SIMD flags, as kernel/bench/run does.
 *
 * Prints one line per measurement: name, MiB, best-of-N seconds, ms/MiB.
 *
 *   reloc-digest [MIB] [REPEATS]      (default 256 MiB, 5 repeats)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 4096UL

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A permutation of [0, n): pages in the order a fragmented allocator gives them */
static size_t *shuffled(size_t n, unsigned int seed)
{
	size_t *p = malloc(n * sizeof(*p));
	size_t i;

	if (!p)
		return NULL;
	for (i = 0; i < n; i++)
		p[i] = i;
	srand(seed);
	for (i = n - 1; i > 0; i--) {
		size_t j = (size_t)rand() % (i + 1), t = p[i];

		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

/* sha256-plain.c, built like the purgatory: no SIMD registers at all */
uint32_t sha256_blocks(const uint8_t *p, size_t len);

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 256;
	int repeats = argc > 2 ? atoi(argv[2]) : 5, r;
	size_t bytes = mib << 20, pages = bytes / PAGE, i;
	uint8_t *src = malloc(bytes), *dst = malloc(bytes), swap[PAGE];
	size_t *from = shuffled(pages, 1), *to = shuffled(pages, 2);
	double best_copy = 1e9, best_swap = 1e9, best_sha = 1e9, t;
	volatile uint32_t sink = 0;

	/* Self-check against FIPS 180-2 appendix B.1's "abc" */
	{
		uint8_t abc[64] = { 'a', 'b', 'c', 0x80 };

		abc[63] = 24;
		if (sha256_blocks(abc, 64) != 0xba7816bf) {
			fprintf(stderr, "reloc-digest: sha256 self-check failed\n");
			return 1;
		}
	}
	if (!src || !dst || !from || !to || !mib || repeats < 1) {
		fprintf(stderr, "usage: reloc-digest [MIB>0] [REPEATS>0] (or out of memory)\n");
		return 2;
	}
	for (i = 0; i < bytes; i++)
		src[i] = (uint8_t)(i * 2654435761u >> 13);
	memset(dst, 0, bytes);

	for (r = 0; r < repeats; r++) {
		t = now();
		for (i = 0; i < pages; i++)
			memcpy(dst + to[i] * PAGE, src + from[i] * PAGE, PAGE);
		t = now() - t;
		if (t < best_copy)
			best_copy = t;

		t = now();
		for (i = 0; i < pages; i++) {
			uint8_t *s = src + from[i] * PAGE, *d = dst + to[i] * PAGE;

			memcpy(swap, s, PAGE);
			memcpy(s, d, PAGE);
			memcpy(d, swap, PAGE);
		}
		t = now() - t;
		if (t < best_swap)
			best_swap = t;

		t = now();
		sink ^= sha256_blocks(dst, bytes);
		t = now() - t;
		if (t < best_sha)
			best_sha = t;
	}
	printf("copy %zu %.4f %.3f\n", mib, best_copy, best_copy * 1e3 / mib);
	printf("swap %zu %.4f %.3f\n", mib, best_swap, best_swap * 1e3 / mib);
	printf("sha256 %zu %.4f %.3f\n", mib, best_sha, best_sha * 1e3 / mib);
	return sink == 0x12345678;
}
