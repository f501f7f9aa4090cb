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
/// `S::default()` per run: what it holds must not change what `f` returns).
pub(super) fn map_in_order<T: Send, R: Send, S: Default>(
    mut items: Vec<T>,
    f: impl Fn(&mut S, T) -> R + Sync,
) -> Vec<R> {
    let run = |run: Vec<T>| {
        let mut state = S::default();
        run.into_iter()
            .map(|item| f(&mut state, item))
            .collect::<Vec<R>>()
    };
    let threads = threads_for(items.len());
    if threads == 1 {
        return run(items);
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
        let runs: Vec<_> = runs
            .into_iter()
            .map(|items| scope.spawn(move || run(items)))
            .collect();
        let mut out = Vec::new();
        for run in runs {
            // A panic in `f` is a bug; it goes on as it would have on one thread.
            out.extend(run.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
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
            let out = map_in_order(items.clone(), |_: &mut (), i| i * 3 + 1);
            assert_eq!(
                out,
                items.iter().map(|i| i * 3 + 1).collect::<Vec<_>>(),
                "{n} items"
            );
        }
    }
}
