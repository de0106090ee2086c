//! The in-memory runtime for tests and simulations, with knobs to fail creates, crash or delete instances, and play their output.
//!
//! It keeps a log of every call so tests can assert what the agent asked for. It runs no
//! programs: what a program would do by itself (print, exit, ignore SIGTERM, answer an exec
//! probe) a test plays through the knobs, and the runtime contract suite
//! (`tests/it/runtime_contract.rs`) holds it to the behaviour of the real runtimes.
//!
//! Always compiled, so integration tests and benches use it without a feature flag; only tests
//! and benches construct one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::watch;

use super::{
    instance_name, labels, random_suffix, tail_lines, ContainerRuntime, Instance, InstanceSpec,
    InstanceState, LogStream, Result, RuntimeError, RuntimeKind,
};

/// One call the fake received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    List { cluster: String, node: String },
    Create { daemonset: String, revision: String },
    Stop { id: String, grace: Duration },
    Remove { id: String },
    Inspect { id: String },
    Exec { id: String, cmd: Vec<String> },
    Logs { id: String, follow: bool },
}

/// What an instance does when `stop` sends it SIGTERM (see [`FakeRuntime::set_on_term`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTerm {
    /// It exits at once with this code, as a process with a SIGTERM handler chooses its own.
    Exit(i32),
    /// It carries on, so `stop` waits out the grace period and kills it: 137 (128 + SIGKILL).
    Ignore,
}

/// 143 = 128 + SIGTERM: how a process without a handler ends on SIGTERM.
const DEFAULT_ON_TERM: OnTerm = OnTerm::Exit(143);
/// 137 = 128 + SIGKILL, what both real runtimes report for an instance killed after its grace.
const KILLED: i32 = 137;

/// A cloneable handle: the agent under test gets one clone, the test keeps another to turn knobs.
/// Every clone is the same store, as every connection to one Docker engine sees the same
/// containers; a new clone is what an agent restart sees.
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    inner: Arc<Mutex<State>>,
    /// Bumped on every change of an instance or its output, so followed logs wait for news
    /// instead of polling.
    changes: Arc<watch::Sender<()>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime {
            inner: Arc::default(),
            changes: Arc::new(watch::channel(()).0),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, (InstanceSpec, Instance)>,
    calls: Vec<Call>,
    /// Errors handed out by the next creates, one each, before the image checks.
    create_failures: VecDeque<RuntimeError>,
    /// Images whose every create fails with `ImagePull`, as with a registry that lacks them.
    missing_images: BTreeSet<String>,
    /// When set, every call fails with `Unavailable`, as with a stopped Docker engine.
    unavailable: bool,
    /// Exit code of exec per instance; absent means 0.
    exec_codes: HashMap<String, i32>,
    /// When set, exec sleeps this long first (so probe timeouts can be tested).
    exec_delay: Option<Duration>,
    /// What each instance does on SIGTERM; absent means [`DEFAULT_ON_TERM`].
    on_term: HashMap<String, OnTerm>,
    /// Everything each instance "wrote" (stdout and stderr together), kept until it is removed.
    output: HashMap<String, Vec<u8>>,
    next_pid: u32,
}

impl State {
    /// Forgets an instance and everything kept for it; true if there was one.
    fn forget(&mut self, id: &str) -> bool {
        self.exec_codes.remove(id);
        self.on_term.remove(id);
        self.output.remove(id);
        self.instances.remove(id).is_some()
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the assertions that follow.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every followed log, after a change they may be waiting for.
    fn changed(&self) {
        self.changes.send_replace(());
    }

    /// The next create fails with `err` (queued; one error per create).
    pub fn fail_next_create(&self, err: RuntimeError) {
        self.state().create_failures.push_back(err);
    }

    /// Every create of `image` fails with `ImagePull` until `restore_image`.
    pub fn set_image_missing(&self, image: &str) {
        self.state().missing_images.insert(image.to_string());
    }

    pub fn restore_image(&self, image: &str) {
        self.state().missing_images.remove(image);
    }

    /// Every call fails with `Unavailable` while set.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state().unavailable = unavailable;
    }

    /// The instance exits with `code` by itself, as a crashing container does.
    pub fn crash(&self, id: &str, code: i32) -> bool {
        let crashed = match self.state().instances.get_mut(id) {
            Some((_, instance)) => {
                finish(instance, code);
                true
            }
            None => false,
        };
        self.changed();
        crashed
    }

    /// The instance disappears without the agent asking, like a `docker rm -f` by hand.
    pub fn delete_behind_the_agents_back(&self, id: &str) -> bool {
        let deleted = self.state().forget(id);
        self.changed();
        deleted
    }

    /// Puts an instance in place as if an earlier agent had created it (for adoption tests).
    pub fn insert_running(&self, spec: &InstanceSpec) -> Instance {
        let mut state = self.state();
        let instance = new_instance(&mut state, spec);
        state
            .instances
            .insert(instance.id.clone(), (spec.clone(), instance.clone()));
        instance
    }

    /// Exit code that `exec` returns for this instance from now on.
    pub fn set_exec_code(&self, id: &str, code: i32) {
        self.state().exec_codes.insert(id.to_string(), code);
    }

    pub fn set_exec_delay(&self, delay: Option<Duration>) {
        self.state().exec_delay = delay;
    }

    /// What this instance does when `stop` sends SIGTERM from now on.
    pub fn set_on_term(&self, id: &str, on_term: OnTerm) {
        self.state().on_term.insert(id.to_string(), on_term);
    }

    /// The running instance writes `text` to its output; false if it is not running, since
    /// only a live program writes.
    pub fn print(&self, id: &str, text: &str) -> bool {
        let printed = {
            let mut state = self.state();
            let running = state.instances.get(id).is_some_and(|(_, i)| i.state.is_running());
            if running {
                let out = state.output.entry(id.to_string()).or_default();
                out.extend_from_slice(text.as_bytes());
            }
            running
        };
        self.changed();
        printed
    }

    /// All instances, whatever their cluster and node.
    pub fn instances(&self) -> Vec<Instance> {
        self.state().instances.values().map(|(_, i)| i.clone()).collect()
    }

    /// The spec an instance was created from.
    pub fn spec_of(&self, id: &str) -> Option<InstanceSpec> {
        self.state().instances.get(id).map(|(s, _)| s.clone())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// How many creates were attempted (failed ones included).
    pub fn create_count(&self) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| matches!(c, Call::Create { .. }))
            .count()
    }

    fn enter(&self, call: Call) -> Result<MutexGuard<'_, State>> {
        let mut state = self.state();
        state.calls.push(call);
        if state.unavailable {
            return Err(RuntimeError::Unavailable {
                reason: "fake runtime set unavailable".into(),
                source: None,
            });
        }
        Ok(state)
    }

    /// The output of a known instance so far; `NotFound` for an unknown one.
    fn output_of(&self, id: &str, follow: bool) -> Result<Vec<u8>> {
        let state = self.enter(Call::Logs {
            id: id.into(),
            follow,
        })?;
        if !state.instances.contains_key(id) {
            return Err(RuntimeError::NotFound { id: id.into() });
        }
        Ok(state.output.get(id).cloned().unwrap_or_default())
    }
}

fn new_instance(state: &mut State, spec: &InstanceSpec) -> Instance {
    state.next_pid += 1;
    let id = instance_name(spec, &random_suffix());
    let mut instance = Instance::from_labels(id.clone(), id, InstanceState::Running, labels::for_spec(spec));
    instance.started_at = Some(SystemTime::now());
    instance.pid = Some(10_000 + state.next_pid);
    instance.image = spec.image.clone();
    instance
}

/// The instance has ended with `code`, as a real runtime reports it afterwards.
fn finish(instance: &mut Instance, code: i32) {
    instance.state = InstanceState::Exited { code: Some(code) };
    instance.finished_at = Some(SystemTime::now());
    instance.pid = None;
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Fake
    }

    async fn list(&self, cluster: &str, node: &str) -> Result<Vec<Instance>> {
        let state = self.enter(Call::List {
            cluster: cluster.into(),
            node: node.into(),
        })?;
        Ok(state
            .instances
            .values()
            .filter(|(_, i)| labels::belongs_to(&i.labels, cluster, node))
            .map(|(_, i)| i.clone())
            .collect())
    }

    async fn create_and_start(&self, spec: &InstanceSpec) -> Result<Instance> {
        let mut state = self.enter(Call::Create {
            daemonset: spec.daemonset.clone(),
            revision: spec.revision.clone(),
        })?;
        if let Some(err) = state.create_failures.pop_front() {
            return Err(err);
        }
        if state.missing_images.contains(&spec.image) {
            return Err(RuntimeError::ImagePull {
                image: spec.image.clone(),
                reason: "fake: image not found".into(),
                source: None,
            });
        }
        let instance = new_instance(&mut state, spec);
        state
            .instances
            .insert(instance.id.clone(), (spec.clone(), instance.clone()));
        Ok(instance)
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        {
            let mut state = self.enter(Call::Stop { id: id.into(), grace })?;
            let on_term = state.on_term.get(id).copied().unwrap_or(DEFAULT_ON_TERM);
            let (_, instance) = state
                .instances
                .get_mut(id)
                .ok_or_else(|| RuntimeError::NotFound { id: id.into() })?;
            if !instance.state.is_running() {
                return Ok(());
            }
            if let OnTerm::Exit(code) = on_term {
                finish(instance, code);
                drop(state);
                self.changed();
                return Ok(());
            }
        }
        // SIGTERM ignored: the whole grace period passes, as with a real process, then SIGKILL.
        tokio::time::sleep(grace).await;
        if let Some((_, instance)) = self.state().instances.get_mut(id) {
            if instance.state.is_running() {
                finish(instance, KILLED);
            }
        }
        self.changed();
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let removed = self.enter(Call::Remove { id: id.into() })?.forget(id);
        self.changed();
        if removed {
            Ok(())
        } else {
            Err(RuntimeError::NotFound { id: id.into() })
        }
    }

    async fn inspect(&self, id: &str) -> Result<Instance> {
        let state = self.enter(Call::Inspect { id: id.into() })?;
        state
            .instances
            .get(id)
            .map(|(_, i)| i.clone())
            .ok_or_else(|| RuntimeError::NotFound { id: id.into() })
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<i32> {
        let (code, delay) = {
            let state = self.enter(Call::Exec {
                id: id.into(),
                cmd: cmd.to_vec(),
            })?;
            // Both real runtimes refuse an empty probe command before looking at the instance.
            if cmd.is_empty() {
                return Err(RuntimeError::invalid("exec needs a command"));
            }
            let (_, instance) = state
                .instances
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound { id: id.into() })?;
            if !instance.state.is_running() {
                return Err(RuntimeError::NotRunning { id: id.into() });
            }
            (state.exec_codes.get(id).copied().unwrap_or(0), state.exec_delay)
        };
        if let Some(delay) = delay {
            if delay >= timeout {
                tokio::time::sleep(timeout).await;
                return Err(RuntimeError::Timeout {
                    what: format!("exec {cmd:?} in {id}"),
                    after: timeout,
                });
            }
            tokio::time::sleep(delay).await;
        }
        Ok(code)
    }

    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<String> {
        let out = self.output_of(id, false)?;
        Ok(tail_lines(&String::from_utf8_lossy(&out), tail))
    }

    async fn follow_logs(&self, id: &str, tail: Option<usize>) -> Result<LogStream> {
        // Subscribed before the read, so nothing written after it can be missed.
        let changes = self.changes.subscribe();
        let out = self.output_of(id, true)?;
        let first = tail_lines(&String::from_utf8_lossy(&out), tail).into_bytes();
        let follow = Follow {
            rt: self.clone(),
            id: id.to_string(),
            offset: out.len(),
            first: Some(first).filter(|f| !f.is_empty()),
            changes,
        };
        Ok(Box::pin(futures_util::stream::unfold(follow, Follow::next)))
    }
}

/// Where one followed log is in an instance's output.
struct Follow {
    rt: FakeRuntime,
    id: String,
    /// Bytes of the output already handed out.
    offset: usize,
    /// The tail read at the start, handed out first.
    first: Option<Vec<u8>>,
    changes: watch::Receiver<()>,
}

/// What a look at the store found for a followed log.
enum Seen {
    Output(Vec<u8>),
    Nothing,
    /// Exited with its output drained, or removed: nothing more will come.
    End,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Vec<u8>>, Follow)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        loop {
            // Marked seen before the look, so a change made after it ends the wait below.
            self.changes.borrow_and_update();
            let seen = {
                let state = self.rt.state();
                match state.instances.get(&self.id) {
                    None => Seen::End,
                    Some((_, instance)) => {
                        let out = state.output.get(&self.id).map(Vec::as_slice).unwrap_or_default();
                        if out.len() > self.offset {
                            Seen::Output(out[self.offset..].to_vec())
                        } else if instance.state.is_running() {
                            Seen::Nothing
                        } else {
                            Seen::End
                        }
                    }
                }
            };
            match seen {
                Seen::Output(chunk) => {
                    self.offset += chunk.len();
                    return Some((Ok(chunk), self));
                }
                Seen::End => return None,
                // The sender lives in `self.rt`, so this wait ends only with a change.
                Seen::Nothing => self.changes.changed().await.ok()?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_support::spec;

    #[tokio::test]
    async fn knobs_shape_what_the_agent_sees() {
        let rt = FakeRuntime::new();
        let s = spec("ds", "n1");
        let a = rt.create_and_start(&s).await.unwrap();
        assert_eq!(a.state, InstanceState::Running);
        assert_eq!(rt.list("c1", "n1").await.unwrap().len(), 1);
        assert!(rt.list("c1", "n2").await.unwrap().is_empty());

        assert!(rt.crash(&a.id, 1));
        assert_eq!(
            rt.inspect(&a.id).await.unwrap().state,
            InstanceState::Exited { code: Some(1) }
        );
        assert!(matches!(
            rt.exec(&a.id, &["true".into()], Duration::from_secs(1)).await,
            Err(RuntimeError::NotRunning { .. })
        ));

        rt.set_image_missing("busybox:v1");
        let err = rt.create_and_start(&s).await.unwrap_err();
        assert_eq!(err.status_reason(), "ErrImagePull");
        rt.restore_image("busybox:v1");

        rt.fail_next_create(RuntimeError::invalid("boom"));
        assert!(rt.create_and_start(&s).await.is_err());
        let b = rt.create_and_start(&s).await.unwrap();
        rt.set_exec_code(&b.id, 3);
        assert_eq!(
            rt.exec(&b.id, &["x".into()], Duration::from_secs(1))
                .await
                .unwrap(),
            3
        );

        rt.set_unavailable(true);
        assert!(matches!(
            rt.list("c1", "n1").await,
            Err(RuntimeError::Unavailable { .. })
        ));
        rt.set_unavailable(false);

        rt.stop(&b.id, Duration::from_secs(5)).await.unwrap();
        rt.remove(&b.id).await.unwrap();
        assert!(matches!(
            rt.remove(&b.id).await,
            Err(RuntimeError::NotFound { .. })
        ));
        assert!(rt.calls().contains(&Call::Stop {
            id: b.id.clone(),
            grace: Duration::from_secs(5)
        }));
        assert_eq!(rt.create_count(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_kills_an_instance_ignoring_sigterm_only_after_its_grace() {
        let rt = FakeRuntime::new();
        let a = rt.insert_running(&spec("ds", "n1"));
        rt.set_on_term(&a.id, OnTerm::Ignore);
        let started = tokio::time::Instant::now();
        rt.stop(&a.id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(
            rt.inspect(&a.id).await.unwrap().state,
            InstanceState::Exited { code: Some(137) }
        );

        let b = rt.insert_running(&spec("ds", "n1"));
        rt.set_on_term(&b.id, OnTerm::Exit(0));
        rt.stop(&b.id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(30),
            "no wait for a handler"
        );
        assert_eq!(
            rt.inspect(&b.id).await.unwrap().state,
            InstanceState::Exited { code: Some(0) }
        );
    }

    #[tokio::test]
    async fn followed_output_streams_until_the_instance_exits() {
        use futures_util::StreamExt;
        let rt = FakeRuntime::new();
        let a = rt.insert_running(&spec("ds", "n1"));
        assert!(rt.print(&a.id, "one\ntwo\n"));
        assert_eq!(rt.logs(&a.id, Some(1)).await.unwrap(), "two\n");
        let mut stream = rt.follow_logs(&a.id, Some(1)).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), b"two\n");
        let writer = rt.clone();
        let id = a.id.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            writer.print(&id, "three\n");
            writer.crash(&id, 0);
        });
        assert_eq!(stream.next().await.unwrap().unwrap(), b"three\n");
        assert!(stream.next().await.is_none(), "ends once exited and drained");
        assert!(!rt.print(&a.id, "late\n"), "an exited instance writes nothing");
        rt.remove(&a.id).await.unwrap();
        assert!(matches!(
            rt.logs(&a.id, None).await,
            Err(RuntimeError::NotFound { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_exec_times_out() {
        let rt = FakeRuntime::new();
        let a = rt.insert_running(&spec("ds", "n1"));
        rt.set_exec_delay(Some(Duration::from_secs(10)));
        let err = rt
            .exec(&a.id, &["x".into()], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Timeout { .. }));
    }
}
