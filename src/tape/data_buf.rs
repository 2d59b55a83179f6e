//! Where a tape's raw bytes wait for the disk: block-aligned buffers, carved from a few
//! regions in transparent huge pages ([`Arena`]), or from the heap when no slot is
//! free or a buffer must be larger than a slot.
//!
//! Why huge pages: a direct write pins every page of its buffers, and the block layer
//! makes one request of at most `max_segments` physically contiguous runs. With 4 KiB
//! pages the tape's 4 MiB writes became requests of about 500 KiB here, each a virtio
//! notification (a VM exit) and a completion interrupt on a core the proxy uses. A
//! gigabyte written directly in 4 MiB writes from 4 KiB pages took 0.055 s of system
//! time and 2048 requests; from huge pages 0.014 s and 256 requests (a C probe, both
//! run on this machine; BENCHMARKS.md, "Recording").

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::file::BLOCK;

/// A huge page: regions are aligned to it.
const HUGE_PAGE: usize = 2 << 20;
/// One region of slots: small, so the arena grows by what it needs (a fresh huge page
/// costs its zeroing at the first touch, about 6 ms per 2 MiB here, where the host
/// backs guest memory lazily).
pub(crate) const REGION: usize = 4 << 20;
/// At most this many regions (the memory is kept for the recorder's life): beyond that,
/// buffers come from the heap, as every buffer would without the arena.
const REGIONS: usize = 16;

/// [`Arena::grow_ahead`] makes a region when fewer bytes of slots than this are at
/// hand: two regions, because a region's zeroing takes about 12 ms here, and at 1 GB/s
/// of event data the slots taken meanwhile come from what is at hand.
const AHEAD: usize = 2 * REGION;

/// Copies shorter than this are ordinary: the setup of a streaming copy would cost
/// more than the cache lines it spares.
const UNCACHED_MIN: usize = 1024;

/// What a buffer is padded with (`DataBuf::pad_to_block`).
static ZEROS: [u8; BLOCK] = [0; BLOCK];

/// Makes this thread's streaming stores ([`copy_uncached`]) visible to every later
/// access: they are weakly ordered, and Rust requires an `sfence` by the thread that
/// made them before any other access to the bytes, from this thread or another. It
/// waits for the stores still in flight: after a lone 16 KiB copy, about 90 ns here.
fn fence_streaming_stores() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Copies `src` to `dst` with non-temporal stores where the CPU has them, so that the
/// copy neither reads the destination's cache lines first (a data buffer was last
/// touched a whole write ago, so every line would come from memory) nor evicts the
/// proxy's working set to keep bytes that only the disk will read. Measured at 16 KiB
/// events: 1.1 against 1.7 µs per event; at 256 B events (44 KiB reads) 20-34 against
/// 76 ns.
///
/// # Safety
///
/// `dst` is valid for writes of `src.len()` bytes and does not overlap `src`. When
/// it returns `true` (streaming stores were used), [`fence_streaming_stores`] runs on
/// this thread before anything reads `dst` or hands it to another thread.
unsafe fn copy_uncached(dst: *mut u8, src: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= UNCACHED_MIN {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        // SAFETY: every byte of `dst..dst + src.len()` is written once (head, 16-byte
        // blocks, tail); `_mm_stream_si128` gets 16-byte aligned addresses (`head`
        // aligns `dst + head`), unaligned loads take any address; SSE2 is part of
        // x86_64. The fence is the caller's (see above): once per chunk handed to the
        // writer's thread, not once per copy.
        unsafe {
            let head = dst.align_offset(16).min(src.len());
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head);
            let mut at = head;
            while at + 64 <= src.len() {
                let from = src.as_ptr().add(at).cast::<__m128i>();
                let to = dst.add(at).cast::<__m128i>();
                let (a, b) = (_mm_loadu_si128(from), _mm_loadu_si128(from.add(1)));
                let (c, d) = (_mm_loadu_si128(from.add(2)), _mm_loadu_si128(from.add(3)));
                _mm_stream_si128(to, a);
                _mm_stream_si128(to.add(1), b);
                _mm_stream_si128(to.add(2), c);
                _mm_stream_si128(to.add(3), d);
                at += 64;
            }
            while at + 16 <= src.len() {
                let block = _mm_loadu_si128(src.as_ptr().add(at).cast::<__m128i>());
                _mm_stream_si128(dst.add(at).cast::<__m128i>(), block);
                at += 16;
            }
            std::ptr::copy_nonoverlapping(src.as_ptr().add(at), dst.add(at), src.len() - at);
        }
        return true;
    }
    // SAFETY: the caller's.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    false
}

/// A block-aligned byte buffer of fixed capacity, whole blocks, whose contents go to
/// the tape's data file. It never moves (a moved buffer would lose its alignment, and a direct write
/// needs it): appending past its capacity is the caller's mistake, caught by
/// [`DataBuf::append`], which then moves to a larger heap buffer rather than lose bytes.
pub struct DataBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    home: Home,
    /// Streaming stores made since the last [`DataBuf::fence`].
    unfenced: bool,
}

enum Home {
    /// A slot of this arena, given back on drop.
    Arena(Arc<Arena>),
    /// `std::alloc::alloc` with `heap_layout(cap)`.
    Heap,
}

// SAFETY: a `DataBuf` owns its bytes exclusively (like a `Vec<u8>`); the arena it may
// return them to is `Sync`. Its streaming stores are fenced by the thread that made
// them before another thread can read them: the recorder fences a chunk when it
// queues it (`DataBuf::fence`), `Drop` before the bytes go back.
unsafe impl Send for DataBuf {}
unsafe impl Sync for DataBuf {}

fn heap_layout(cap: usize) -> Layout {
    Layout::from_size_align(cap.max(1), BLOCK).expect("a buffer size fits a layout")
}

impl DataBuf {
    /// A heap buffer of at least `cap` bytes (whole blocks).
    pub fn heap(cap: usize) -> Self {
        let cap = cap.max(1).next_multiple_of(BLOCK);
        let layout = heap_layout(cap);
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout);
        };
        Self {
            ptr,
            len: 0,
            cap,
            home: Home::Heap,
            unfenced: false,
        }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        if self.unfenced {
            // On the thread that made the stores (another gets the buffer fenced).
            fence_streaming_stores();
        }
        // SAFETY: the first `len` bytes were written (`append`, `pad_to_block`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Makes the bytes appended so far visible to other threads: call before the
    /// buffer leaves this thread. Once per buffer, not per append: the fence waits for
    /// the stores in flight, which by the time a chunk is full have long landed.
    pub fn fence(&mut self) {
        if std::mem::take(&mut self.unfenced) {
            fence_streaming_stores();
        }
    }

    /// Appends `src` (streaming stores: [`copy_uncached`]). A buffer without room
    /// moves to a larger heap buffer first rather than lose bytes (a copy: the
    /// caller sized it wrong; the recorder splits a read at the room left).
    pub fn append(&mut self, src: &[u8]) {
        if self.cap - self.len < src.len() {
            let mut bigger = Self::heap((self.len + src.len()) * 2);
            bigger.append(self.as_slice());
            *self = bigger;
        }
        // SAFETY: `len + src.len() <= cap`, and `src` is not this buffer's memory
        // (`&mut self`); the stores are fenced before the bytes are read (`as_slice`,
        // `fence`, `Drop`).
        self.unfenced |= unsafe { copy_uncached(self.ptr.as_ptr().add(self.len), src) };
        self.len += src.len();
    }

    /// Pads the bytes with zeros to whole blocks, for a direct write (it always fits:
    /// a capacity is whole blocks).
    pub fn pad_to_block(&mut self) {
        let padded = self.len.next_multiple_of(BLOCK);
        debug_assert!(padded <= self.cap);
        // SAFETY: `len <= cap` and `cap` is whole blocks, so `padded <= cap`, and the
        // padding is less than a block. Streaming stores: the tail block's lines are
        // not in the cache, and ordinary stores would read each from memory first.
        self.unfenced |=
            unsafe { copy_uncached(self.ptr.as_ptr().add(self.len), &ZEROS[..padded - self.len]) };
        self.len = padded;
    }
}

impl Drop for DataBuf {
    fn drop(&mut self) {
        // The bytes may go to another thread next (an arena slot, heap memory).
        self.fence();
        match &self.home {
            Home::Arena(arena) => arena.give_back(self.ptr),
            // SAFETY: allocated by `DataBuf::heap` with this layout.
            Home::Heap => unsafe { std::alloc::dealloc(self.ptr.as_ptr(), heap_layout(self.cap)) },
        }
    }
}

impl std::fmt::Debug for DataBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .field("arena", &matches!(self.home, Home::Arena(_)))
            .finish()
    }
}

/// Slots of one size in up to [`REGIONS`] regions of huge pages, handed out as
/// [`DataBuf`]s and taken back when they drop. Regions are made ahead (at the start,
/// [`Arena::premake`]; then one at a time, [`Arena::grow_ahead`]) and kept.
pub struct Arena {
    slot: usize,
    state: Mutex<State>,
    /// Buffers of a slot's size or less that came from the heap: none was free.
    from_heap: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Slots given back (addresses).
    free: Vec<usize>,
    /// Regions made (addresses), for `Drop`.
    regions: Vec<usize>,
    /// Regions already touched by [`Arena::grow_ahead`], not yet carved into slots.
    ready: Vec<usize>,
    /// The next slot never handed out, in the newest region, and that region's end.
    next: usize,
    end: usize,
    /// A region made by `grow_ahead` is being touched.
    growing: bool,
}

impl Arena {
    /// An arena of `slot`-byte buffers (rounded up to whole blocks; at most a region).
    pub fn new(slot: usize) -> Arc<Self> {
        Arc::new(Self {
            slot: slot.next_multiple_of(BLOCK).min(REGION),
            state: Mutex::new(State::default()),
            from_heap: AtomicU64::new(0),
        })
    }

    /// A buffer of at least `cap` bytes: a slot if `cap` fits one and one is free in
    /// the regions made so far, else from the heap.
    pub fn take(self: &Arc<Self>, cap: usize) -> DataBuf {
        if cap <= self.slot {
            if let Some(ptr) = self.slot_ptr() {
                return DataBuf {
                    ptr,
                    len: 0,
                    cap: self.slot,
                    home: Home::Arena(self.clone()),
                    unfenced: false,
                };
            }
            self.from_heap.fetch_add(1, Ordering::Relaxed);
        }
        DataBuf::heap(cap)
    }

    /// Bytes of regions made (kept until the arena drops), and how many buffers that
    /// would have fit a slot came from the heap because none was free: for the
    /// metrics, where a count that grows says the arena is too small for the traffic.
    pub fn usage(&self) -> (u64, u64) {
        let regions = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .regions
            .len();
        (
            (regions * REGION) as u64,
            self.from_heap.load(Ordering::Relaxed),
        )
    }

    fn slot_ptr(&self) -> Option<NonNull<u8>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = state.free.pop() {
            return NonNull::new(at as *mut u8);
        }
        if state.end - state.next < self.slot {
            // Only regions made ahead: a fresh one would be zeroed at its first touch,
            // on the proxy's thread that asked for the slot (the heap is the fallback).
            let region = state.ready.pop()?;
            (state.next, state.end) = (region, region + REGION);
        }
        let at = state.next;
        state.next += self.slot;
        NonNull::new(at as *mut u8)
    }

    /// Makes the next region before a buffer needs it, and touches its pages, once the
    /// slots at hand are fewer than [`AHEAD`]: for the recorder's writer thread, which
    /// calls it every time it wakes. The first touch of a huge page is its zeroing
    /// (about 6 ms per 2 MiB here, where the host backs guest memory lazily), which
    /// would otherwise fall on the proxy's thread that happened to need the slot. The
    /// touching runs on a thread of its own, one region at a time: on the writer's, the
    /// writer stopped writing for it, the chunks that queued up meanwhile took more
    /// slots, and at 100 streams of 16 KiB events that made the arena grow again and
    /// send hundreds of buffers to the heap. Does nothing for an arena without regions
    /// (made without [`Arena::premake`]: its buffers all come from the heap).
    pub fn grow_ahead(self: &Arc<Self>) {
        let region = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let at_hand = state.free.len() * self.slot
                + (state.end - state.next)
                + state.ready.len() * REGION;
            if state.growing
                || state.regions.is_empty()
                || state.regions.len() >= REGIONS
                || at_hand >= AHEAD
            {
                return;
            }
            let Some(region) = new_region() else {
                return;
            };
            // Counted now, so that `premake` keeps to the limit meanwhile.
            state.regions.push(region);
            state.growing = true;
            region
        };
        let arena = self.clone();
        let grower = std::thread::Builder::new()
            .name("sluice-rec-grow".into())
            .spawn(move || arena.grown(region));
        if grower.is_err() {
            self.grown(region);
        }
    }

    /// Touches a region made by `grow_ahead` and hands it out.
    fn grown(&self, region: usize) {
        // Outside the lock: slots are handed out meanwhile.
        touch(region);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.ready.push(region);
        state.growing = false;
    }

    /// Makes up to `regions` regions now, their pages touched, for the first buffers.
    /// For the recorder's start, before traffic: the first fast stream would otherwise
    /// wait on the proxy's thread for the zeroing of its first region, and the writer
    /// thread grow the next few while the stream runs, each a zeroing that takes a core
    /// from the proxy. Made as a single stream of 16 KiB events at full speed needed
    /// them, that cost a 3 s run of it 2-4 points of throughput against recording off
    /// (BENCHMARKS.md, "The start-up round").
    pub fn premake(&self, regions: usize) {
        for _ in 0..regions {
            let region = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.regions.len() >= REGIONS {
                    return;
                }
                let Some(region) = new_region() else {
                    return;
                };
                state.regions.push(region);
                region
            };
            touch(region);
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.ready.push(region);
        }
    }

    fn give_back(&self, ptr: NonNull<u8>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.free.push(ptr.as_ptr() as usize);
    }
}

/// Faults a region's pages in, one write per 4 KiB page (the whole huge page, where the
/// kernel gave one), so that the first buffers carved from it do not.
fn touch(region: usize) {
    for page in (region..region + REGION).step_by(4096) {
        // SAFETY: `region` was mapped by `new_region`, `REGION` bytes, and no slot of it
        // is handed out yet (it is not in `ready`).
        unsafe { (page as *mut u8).write_volatile(0) };
    }
}

/// A region of fresh memory, 2 MiB-aligned and asked to be backed by huge pages before
/// anything touches it (the kernel backs a range with a huge page at its first fault,
/// if asked by then). Mapped directly, not from the allocator: heap memory may have
/// been touched already, in 4 KiB pages.
#[cfg(target_os = "linux")]
fn new_region() -> Option<usize> {
    let span = REGION + HUGE_PAGE;
    // SAFETY: a new private anonymous mapping; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    let base = base as usize;
    let start = base.next_multiple_of(HUGE_PAGE);
    // SAFETY: the slop before `start` and after `start + REGION` is ours and unused;
    // advice changes no contents, and refused advice (huge pages off) leaves ordinary
    // pages, which work as well, only slower.
    unsafe {
        if start > base {
            libc::munmap(base as *mut libc::c_void, start - base);
        }
        let tail = base + span - (start + REGION);
        if tail > 0 {
            libc::munmap((start + REGION) as *mut libc::c_void, tail);
        }
        libc::madvise(start as *mut libc::c_void, REGION, libc::MADV_HUGEPAGE);
    }
    Some(start)
}

/// Elsewhere: no region (every buffer from the heap).
#[cfg(not(target_os = "linux"))]
fn new_region() -> Option<usize> {
    None
}

impl Drop for Arena {
    fn drop(&mut self) {
        // Every slot was given back: each `DataBuf` of the arena holds it alive.
        #[cfg(target_os = "linux")]
        for &region in &self
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .regions
        {
            // SAFETY: mapped by `new_region`, `REGION` bytes, no slot in use.
            unsafe { libc::munmap(region as *mut libc::c_void, REGION) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `grow_ahead`, and waits for its thread.
    fn grow(arena: &Arc<Arena>) {
        arena.grow_ahead();
        while arena.state.lock().unwrap().growing {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn regions(arena: &Arena) -> (usize, Vec<usize>) {
        let state = arena.state.lock().unwrap();
        (state.regions.len(), state.ready.clone())
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn regions_are_made_ahead_never_by_a_taker_and_keep_to_the_limit() {
        let arena = Arena::new(1 << 20);
        grow(&arena);
        assert_eq!(regions(&arena), (0, vec![]), "an arena without regions");
        assert!(
            matches!(arena.take(1).home, Home::Heap),
            "a region made for a taker"
        );
        assert_eq!(regions(&arena).0, 0);
        arena.premake(1);
        grow(&arena);
        let (made, ready) = regions(&arena);
        assert_eq!((made, ready.len()), (2, 2), "one region at hand is too few");
        grow(&arena);
        assert_eq!(regions(&arena).0, 2, "two regions at hand are enough");
        let next = arena.take(1);
        assert_eq!(next.as_slice().as_ptr() as usize, ready[1]);
        let mut held = vec![next];
        while matches!(held.last().map(|b| &b.home), Some(Home::Arena(_))) {
            grow(&arena);
            held.push(arena.take(1));
        }
        assert_eq!(
            regions(&arena),
            (REGIONS, vec![]),
            "growing ahead keeps to the limit, and every region is used"
        );
        drop(held.pop());
        drop(held.pop());
        assert!(
            matches!(arena.take(1).home, Home::Arena(_)),
            "a slot given back is taken again"
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn premade_regions_keep_to_the_limit() {
        let arena = Arena::new(1 << 20);
        arena.premake(3);
        assert_eq!(regions(&arena).1.len(), 3);
        let _first = arena.take(1);
        grow(&arena);
        assert_eq!(regions(&arena).0, 3, "nearly three regions at hand");
        arena.premake(REGIONS + 5);
        assert_eq!(regions(&arena).0, REGIONS);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn slots_are_aligned_reused_and_fall_back_to_the_heap() {
        let arena = Arena::new(100 << 10);
        arena.premake(REGIONS);
        let slot = arena.slot;
        assert_eq!(slot % BLOCK, 0);
        let mut a = arena.take(10);
        assert_eq!(a.capacity(), slot);
        assert_eq!(a.as_slice().as_ptr() as usize % BLOCK, 0);
        a.append(b"hello");
        a.pad_to_block();
        assert_eq!(a.len(), BLOCK);
        assert_eq!(&a.as_slice()[..6], b"hello\0");
        let at = a.as_slice().as_ptr();
        drop(a);
        // The slot comes back.
        assert_eq!(arena.take(1).as_slice().as_ptr(), at);
        // Larger than a slot: the heap, aligned too.
        let big = arena.take(slot + 1);
        assert!(matches!(big.home, Home::Heap));
        assert!(big.capacity() > slot);
        assert_eq!(big.as_slice().as_ptr() as usize % BLOCK, 0);
        // Every region used up: the heap.
        let all: Vec<_> = (0..REGIONS * (REGION / slot))
            .map(|_| arena.take(1))
            .collect();
        assert!(all.iter().all(|b| matches!(b.home, Home::Arena(_))));
        assert!(matches!(arena.take(1).home, Home::Heap));
    }

    #[test]
    fn a_full_buffer_moves_rather_than_lose_bytes() {
        let mut buf = DataBuf::heap(BLOCK);
        let bytes: Vec<u8> = (0..3 * BLOCK).map(|i| i as u8).collect();
        buf.append(&bytes[..BLOCK - 1]);
        buf.append(&bytes[BLOCK - 1..]);
        assert_eq!(buf.as_slice(), &bytes[..]);
        assert!(buf.capacity() >= 3 * BLOCK);
        assert_eq!(buf.as_slice().as_ptr() as usize % BLOCK, 0);
    }

    proptest::proptest! {
        /// The streaming copy appends exactly what `extend_from_slice` would, wherever
        /// the buffer's end falls against the 16-byte blocks and whatever the length
        /// (short copies, a head, whole blocks, blocks of 64, a tail).
        #[test]
        fn an_append_is_an_append(
            before in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            src in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5000),
            skip in 0usize..16,
        ) {
            let src = &src[skip.min(src.len())..];
            let mut buf = DataBuf::heap(before.len() + src.len());
            buf.append(&before);
            buf.append(src);
            let mut plain = before.clone();
            plain.extend_from_slice(src);
            proptest::prop_assert_eq!(buf.as_slice(), &plain[..]);
        }
    }
}
