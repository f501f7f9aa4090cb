//! Work over many entries spread over the machine's cores, with results exactly as one
//! thread would give them: the items are cut into contiguous runs, one per thread, and the
//! runs' results are put back together in order. With one core (or few items) it is a
//! plain loop on the calling thread.

/// Fewer items than this per thread are not worth a thread.
const MIN_PER_THREAD: usize = 64;

/// How many threads to use for `n` items.
fn threads_for(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    cores.min(n / MIN_PER_THREAD).max(1)
}

/// `f` of each item, in the items' order, computed on up to as many threads as there are
/// cores. `f` takes each item once, with a scratch state `S` of its run (a fresh
/// `S::default()` per run: what it holds must not change what `f` returns). The results
/// come as one iterator over the runs' own vectors, never copied into one more.
pub(super) fn map_in_order<T: Send, R: Send, S: Default>(
    items: Vec<T>,
    f: impl Fn(&mut S, T) -> R + Sync,
) -> impl Iterator<Item = R> {
    let threads = threads_for(items.len());
    map_runs(items, threads, Spawn::Threads, f).into_iter().flatten()
}

/// `f` of each of the contiguous runs that [`map_in_order`] would cut `items` into, one
/// run to a thread (for work that pays by being done many items at a time).
pub(super) fn for_each_run<T: Sync>(items: &[T], f: impl Fn(&[T]) + Sync) {
    let threads = threads_for(items.len());
    let runs: Vec<&[T]> = items.chunks(items.len().div_ceil(threads).max(1)).collect();
    let threads = runs.len();
    map_runs(runs, threads, Spawn::Threads, |_: &mut (), run| f(run));
}

/// The items left in `slot` (none if they were taken).
fn take<T>(slot: &std::sync::Mutex<Option<Vec<T>>>) -> Vec<T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .unwrap_or_default()
}

/// How runs other than the first are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spawn {
    /// On threads of their own, or, if the system refuses a thread, on the calling one.
    Threads,
    /// As if the system refused every thread (tests).
    #[cfg(test)]
    Refused,
}

/// `f` over `items` cut into `threads` contiguous runs, each run's results in order. The
/// first run is done on the calling thread, each other on a thread of its own; a run whose
/// thread cannot be started (a pids limit, no memory) is done on the calling thread too, so
/// that a load never fails, nor differs, for want of a thread.
fn map_runs<T: Send, R: Send, S: Default>(
    mut items: Vec<T>,
    threads: usize,
    spawn: Spawn,
    f: impl Fn(&mut S, T) -> R + Sync,
) -> Vec<Vec<R>> {
    let run = |run: Vec<T>| {
        let mut state = S::default();
        run.into_iter()
            .map(|item| f(&mut state, item))
            .collect::<Vec<R>>()
    };
    if threads <= 1 || items.len() <= 1 {
        return vec![run(items)];
    }
    let per = items.len().div_ceil(threads);
    let mut runs = Vec::with_capacity(threads);
    while items.len() > per {
        runs.push(items.split_off(items.len() - per));
    }
    runs.push(items);
    runs.reverse();
    let run = &run;
    std::thread::scope(|scope| {
        enum Started<'s, T, R> {
            Spawned(std::thread::ScopedJoinHandle<'s, Vec<R>>),
            Here(Vec<T>),
        }
        let mut runs = runs.into_iter();
        let first = runs.next().unwrap_or_default();
        let started: Vec<Started<'_, T, R>> = runs
            .map(|items| {
                if spawn != Spawn::Threads {
                    return Started::Here(items);
                }
                // The items stay here until the thread takes them: if it cannot start,
                // they are still here, and done on this thread.
                let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(items)));
                let theirs = std::sync::Arc::clone(&slot);
                let spawned = std::thread::Builder::new()
                    .name("jitgate-load".into())
                    .spawn_scoped(scope, move || run(take(&theirs)));
                match spawned {
                    Ok(handle) => Started::Spawned(handle),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not start a thread to load approvals; loading on this one");
                        Started::Here(take(&slot))
                    }
                }
            })
            .collect();
        let mut out = Vec::with_capacity(started.len() + 1);
        out.push(run(first));
        for started in started {
            out.push(match started {
                // A panic in `f` is a bug; it goes on as it would have on one thread.
                Started::Spawned(handle) => handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                Started::Here(items) => run(items),
            });
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_the_items_order_whatever_their_number() {
        for n in [0, 1, 63, 64, 65, 127, 128, 129, 1000, 4097] {
            let items: Vec<usize> = (0..n).collect();
            let out: Vec<usize> = map_in_order(items.clone(), |_: &mut (), i| i * 3 + 1).collect();
            assert_eq!(
                out,
                items.iter().map(|i| i * 3 + 1).collect::<Vec<_>>(),
                "{n} items"
            );
        }
    }

    /// Whatever the number of runs, and whether or not their threads could be started,
    /// the results are the items' in order, each run with a fresh state.
    #[test]
    fn runs_on_threads_or_on_this_one_give_the_same_results_in_order() {
        for spawn in [Spawn::Threads, Spawn::Refused] {
            for threads in [1, 2, 3, 7] {
                for n in [0, 1, 2, 63, 65, 129] {
                    let items: Vec<usize> = (0..n).collect();
                    let runs = map_runs(items.clone(), threads, spawn, |seen: &mut usize, i| {
                        *seen += 1;
                        (i, *seen)
                    });
                    let flat: Vec<(usize, usize)> = runs.iter().flatten().copied().collect();
                    assert_eq!(
                        flat.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                        items,
                        "{spawn:?}, {threads} threads, {n} items"
                    );
                    // Each run counted from one: its state was its own.
                    for run in &runs {
                        let counts: Vec<usize> = run.iter().map(|(_, c)| *c).collect();
                        assert_eq!(counts, (1..=run.len()).collect::<Vec<_>>());
                    }
                    assert!(
                        runs.len() <= threads.max(1),
                        "{threads} threads, {} runs",
                        runs.len()
                    );
                }
            }
        }
    }
}
