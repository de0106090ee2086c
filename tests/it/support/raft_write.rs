//! Writes through whichever Raft node leads now, for tests whose leader may change under a loaded machine.

use std::time::Duration;

use everynode::control::store::Command;
use everynode::control::types::{ClientWriteError, ClientWriteResponse, NodeId, RaftError};
use everynode::control::Raft;
use openraft::ServerState;

/// Writes `cmd` through whichever of `rafts` leads now, and returns that node's id with the
/// response. Leadership can move between finding the leader and writing (a heartbeat late on
/// a loaded machine starts an election): the node asked then answers ForwardToLeader, having
/// taken nothing, and the write is sent again to the new leader.
pub async fn write_through_leader<'a, I>(
    rafts: I,
    cmd: Command,
    settle: Duration,
) -> (NodeId, ClientWriteResponse)
where
    I: IntoIterator<Item = &'a Raft> + Clone,
{
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        // The leader of the highest term: a deposed one may not have noticed yet.
        let leader = rafts
            .clone()
            .into_iter()
            .map(|r| (r, r.metrics().borrow().clone()))
            .filter(|(_, m)| m.state == ServerState::Leader)
            .max_by_key(|(_, m)| m.current_term)
            .map(|(r, m)| (r, m.id));
        let why = match leader {
            None => "no leader".to_string(),
            Some((raft, id)) => {
                let attempt = tokio::time::timeout_at(deadline, raft.client_write(cmd.clone()));
                match attempt.await {
                    Ok(Ok(resp)) => return (id, resp),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                        format!("{id} no longer leads: {f}")
                    }
                    Ok(Err(e)) => panic!("writing {cmd:?} through {id}: {e}"),
                    Err(_) => panic!("writing {cmd:?} through {id} took over {settle:?}"),
                }
            }
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader took {cmd:?} within {settle:?}: {why}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
