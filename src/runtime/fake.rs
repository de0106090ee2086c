//! An in-memory runtime for agent tests, with knobs to fail creates and crash or delete instances.
//!
//! It keeps a log of every call so tests can assert what the agent asked for.
//!
//! Compiled for this crate's own tests and, for other test crates and benches, behind the
//! `fake-runtime` feature, so release builds do not carry it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    instance_name, labels, random_suffix, ContainerRuntime, Instance, InstanceSpec, InstanceState, Result,
    RuntimeError, RuntimeKind,
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
}

/// A cloneable handle: the agent under test gets one clone, the test keeps another to turn knobs.
#[derive(Debug, Clone, Default)]
pub struct FakeRuntime {
    inner: Arc<Mutex<State>>,
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
    next_pid: u32,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the assertions that follow.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
        let mut state = self.state();
        match state.instances.get_mut(id) {
            Some((_, instance)) => {
                instance.state = InstanceState::Exited { code: Some(code) };
                instance.finished_at = Some(SystemTime::now());
                instance.pid = None;
                true
            }
            None => false,
        }
    }

    /// The instance disappears without the agent asking, like a `docker rm -f` by hand.
    pub fn delete_behind_the_agents_back(&self, id: &str) -> bool {
        self.state().instances.remove(id).is_some()
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
        let mut state = self.enter(Call::Stop { id: id.into(), grace })?;
        let (_, instance) = state
            .instances
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound { id: id.into() })?;
        if instance.state.is_running() {
            // 143 = 128 + SIGTERM: what a well-behaved process exits with.
            instance.state = InstanceState::Exited { code: Some(143) };
            instance.finished_at = Some(SystemTime::now());
            instance.pid = None;
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let mut state = self.enter(Call::Remove { id: id.into() })?;
        state
            .instances
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| RuntimeError::NotFound { id: id.into() })
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
