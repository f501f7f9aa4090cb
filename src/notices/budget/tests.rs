use super::*;

#[test]
fn a_sink_queue_holds_a_bounded_number_of_bytes_not_only_messages() {
    let mut q = Queued::default();
    let big = 300 * 1024;
    let taken = (0..10).take_while(|_| q.admit(false, big)).count();
    assert_eq!(taken, SINK_BYTES / big, "then the byte budget is spent");
    assert!(q.bytes() <= SINK_BYTES);
    assert!(!q.admit(false, big), "past the byte budget, dropped");
    q.release(false, big);
    assert!(q.admit(false, big), "a message done with makes room");
}

#[test]
fn a_flood_of_denials_leaves_room_for_requests_and_break_glass() {
    let mut q = Queued::default();
    let denied = (0..SINK_QUEUE).filter(|_| q.admit(true, 4 * 1024)).count();
    assert_eq!(
        denied, DENIED_QUEUE,
        "denials take a quarter of the queue at most"
    );
    let others = (0..SINK_QUEUE).filter(|_| q.admit(false, 4 * 1024)).count();
    assert_eq!(
        others,
        SINK_QUEUE - DENIED_QUEUE,
        "the rest is for everything else"
    );
    // Denials' bytes too: big denials stop at a quarter of the bytes.
    let mut q = Queued::default();
    let denied = (0..SINK_QUEUE).filter(|_| q.admit(true, 16 * 1024)).count();
    assert_eq!(denied, DENIED_BYTES / (16 * 1024));
    assert!(q.admit(false, 16 * 1024));
}

#[test]
fn a_user_makes_a_few_denial_messages_a_minute_whatever_they_vary() {
    let mut d = Denials::default();
    let told = (0..50).filter(|_| d.allow("mallory", 7)).count();
    assert_eq!(told, DENIALS_PER_USER as usize);
    assert!(d.allow("alice", 7), "another user is told of");
    assert!(d.allow("mallory", 8), "next minute, again");
}
