//! The supervisor of one node: follows the store copy and this node's effective labels and taints, starts and retires one `DaemonSetActor` per DaemonSet, and removes orphan instances.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use tokio::sync::watch;
use tracing::{info, warn};

use super::daemonset_actor::{DaemonSetActor, Retired, SetWant, Want};
use super::desired::{desired_with, granted_revision, Desired};
use super::podsetup::{self, PodSetup, StoreObjects};
use super::{AgentContext, AgentError};
use crate::control::store::Store;
use crate::runtime::{RuntimeError, RuntimeKind};
use crate::scheduling::node::NodeInfo;
use crate::scheduling::placement::should_run;
use crate::scheduling::{Taint, TaintEffect};
use crate::spec::downward::PodFacts;
use crate::spec::Strategy;

/// Decides, for one DaemonSet, whether this node runs it now.
///
/// `running` says an actor already keeps an instance here: a new untolerated `NoSchedule` taint
/// keeps new instances off but does not evict (Kubernetes' rule). A tolerated `NoExecute` taint
/// with `tolerationSeconds` evicts that long after this agent first saw the taint.
pub fn runs_here(
    ds: &crate::spec::DaemonSet,
    node: &NodeInfo,
    running: bool,
    taint_seen: &BTreeMap<Taint, SystemTime>,
    now: SystemTime,
) -> bool {
    let p = should_run(ds, node);
    let placed = p.should_run || (running && p.keep_running);
    let evicted = p.eviction.is_some_and(|e| {
        let since = taint_seen.get(&e.taint).copied().unwrap_or(now);
        now >= since + e.after
    });
    placed && !evicted
}

/// Sent whenever the store copy changes.
#[derive(Message)]
#[rtype(result = "()")]
struct StoreChanged(Arc<Store>);

/// Sent when `everynode leave` starts (or is called off).
#[derive(Message)]
#[rtype(result = "()")]
struct LeavingChanged(bool);

/// The per-node supervisor actor.
pub struct NodeAgent {
    ctx: Arc<AgentContext>,
    /// This node's own labels (builtin ones included) and taints; store overrides go on top.
    own: NodeInfo,
    store_rx: watch::Receiver<Arc<Store>>,
    store: Arc<Store>,
    /// One actor per DaemonSet that runs (or is being retired) here.
    actors: BTreeMap<String, Addr<DaemonSetActor>>,
    /// DaemonSets whose actor was told to retire.
    retiring: std::collections::BTreeSet<String>,
    /// When each NoExecute taint was first seen, for `tolerationSeconds`.
    taint_seen: BTreeMap<Taint, SystemTime>,
    /// The node is leaving the cluster: every DaemonSet is retired and none starts.
    leaving: bool,
    /// The last instances each DaemonSet was told to run, kept so that a ConfigMap or Secret
    /// deleted under a running instance does not stop it (Kubernetes keeps such a pod running;
    /// only a new start needs the object).
    last_run: BTreeMap<String, Desired>,
}

impl NodeAgent {
    pub fn new(ctx: Arc<AgentContext>, own: NodeInfo, store_rx: watch::Receiver<Arc<Store>>) -> Self {
        let store = store_rx.borrow().clone();
        NodeAgent {
            ctx,
            own,
            store_rx,
            store,
            actors: BTreeMap::new(),
            retiring: Default::default(),
            taint_seen: BTreeMap::new(),
            leaving: false,
            last_run: BTreeMap::new(),
        }
    }

    /// This node as placement sees it under the store's overrides.
    fn node(&self) -> NodeInfo {
        let mut node = self.own.clone();
        if let Some(o) = self.store.nodes.get(&node.name) {
            o.layer(&mut node.labels, &mut node.taints);
        }
        node
    }

    /// Brings the set of actors in line with the store and the node.
    fn converge(&mut self, ctx: &mut Context<Self>) {
        let now = SystemTime::now();
        let node = self.node();
        self.taint_seen.retain(|t, _| node.taints.iter().any(|n| n == t));
        for t in node.taints.iter().filter(|t| t.effect == TaintEffect::NoExecute) {
            self.taint_seen.entry(t.clone()).or_insert(now);
        }
        let store = self.store.clone();
        let shared = self.ctx.clone();
        let settings = &shared.settings;
        for (name, record) in &store.daemonsets {
            let ds = &record.daemonset;
            let running = self.actors.contains_key(name) && !self.retiring.contains(name);
            let drained = store.is_drained(&settings.node) || self.leaving;
            let want = if !drained && runs_here(ds, &node, running, &self.taint_seen, now) {
                let rev = granted_revision(&store, record, &settings.node);
                let pod_generation = record.rollout.pod_generation(&settings.node);
                match self.build(&store, name, ds, &rev.hash, &rev.template, pod_generation) {
                    Ok(Err(why)) => Want::Refused(why),
                    Ok(Ok(d)) => {
                        let mut d = d.with_pod_generation(pod_generation);
                        d.min_ready_secs = ds.spec.min_ready().as_secs();
                        d.surge = matches!(
                            Strategy::from_spec(&ds.spec.update_strategy).budget(1),
                            Some(b) if b.max_surge > 0
                        );
                        self.last_run.insert(name.clone(), d.clone());
                        Want::Run(Box::new(d))
                    }
                    Err(e @ (AgentError::Config { .. } | AgentError::Volume { .. })) => {
                        match self.last_run.get(name) {
                            Some(last) if last.revision() == rev.hash && running => {
                                Want::Run(Box::new(last.clone()))
                            }
                            _ => Want::Invalid(e.to_string()),
                        }
                    }
                    Err(e) => Want::Invalid(e.to_string()),
                }
            } else {
                Want::Retire
            };
            self.send(ctx, name, want);
        }
        let gone: Vec<String> = self
            .actors
            .keys()
            .filter(|n| !store.daemonsets.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.send(ctx, &name, Want::Retire);
        }
        self.last_run.retain(|n, _| store.daemonsets.contains_key(n));
    }

    /// The instances of one revision on this node (or why this node's policy refuses them),
    /// after its volume files are written and its host paths checked. The policy goes first:
    /// a refused DaemonSet must not even create a `DirectoryOrCreate` host path.
    fn build(
        &self,
        store: &Store,
        name: &str,
        ds: &crate::spec::DaemonSet,
        revision: &str,
        template: &crate::spec::PodTemplateSpec,
        pod_generation: u64,
    ) -> Result<Result<Desired, String>, AgentError> {
        let settings = &self.ctx.settings;
        let namespace = &ds.metadata.namespace;
        let objects = StoreObjects {
            store,
            namespace,
            seal: settings.seal.as_deref(),
        };
        // The host's address is the pod's where they share a network: host network, or the
        // process runtime, whose instances are plain processes of this host.
        let shares_host = template.spec.host_network || self.ctx.runtime.kind() == RuntimeKind::Process;
        let ips = |ip: &str| {
            if ip.is_empty() {
                Vec::new()
            } else {
                vec![ip.to_string()]
            }
        };
        let pod_ip = if shares_host {
            settings.host_ip.clone()
        } else {
            String::new()
        };
        let setup = PodSetup {
            objects: &objects,
            facts: PodFacts {
                name: format!("{name}-{}", settings.node),
                namespace: namespace.clone(),
                uid: podsetup::uid(
                    &settings.cluster,
                    namespace,
                    name,
                    &settings.node,
                    revision,
                    pod_generation,
                ),
                labels: template.metadata.labels.clone(),
                annotations: template.metadata.annotations.clone(),
                node_name: settings.node.clone(),
                service_account_name: "default".into(),
                host_ip: settings.host_ip.clone(),
                host_ips: ips(&settings.host_ip),
                pod_ips: ips(&pod_ip),
                pod_ip,
            },
            allocatable: Some(&settings.allocatable),
            dir: podsetup::pod_dir(&settings.pod_root, namespace, name, revision),
            seccomp_dir: settings.seccomp_dir.clone(),
        };
        let d = desired_with(
            &settings.cluster,
            &settings.node,
            name,
            revision,
            template,
            &setup,
        )?;
        // Init containers run on this host too: the same policy holds for them.
        let all: Vec<_> = d.specs.iter().chain(&d.init).cloned().collect();
        if let Err(why) = settings.policy.check(name, &all, &settings.pod_root) {
            return Ok(Err(why));
        }
        podsetup::prepare(name, template, &setup)?;
        Ok(Ok(d))
    }

    fn send(&mut self, ctx: &mut Context<Self>, name: &str, want: Want) {
        let retire = want == Want::Retire;
        match self.actors.get(name) {
            Some(addr) if addr.connected() => {
                if retire {
                    self.retiring.insert(name.to_string());
                } else {
                    self.retiring.remove(name);
                }
                addr.do_send(SetWant(want));
            }
            _ if retire => {
                self.actors.remove(name);
                self.retiring.remove(name);
            }
            _ => {
                info!(daemonset = %name, "daemonset selects this node; starting its actor");
                let actor = DaemonSetActor::new(name, self.ctx.clone(), want, ctx.address().recipient());
                self.retiring.remove(name);
                self.actors.insert(name.to_string(), actor.start());
            }
        }
    }

    /// Removes the volume directories of revisions that neither run here nor are granted to
    /// this node: after the instances using them are gone, never under a running one.
    fn sweep_pod_dirs(&self, instances: &[crate::runtime::Instance]) {
        let node = &self.ctx.settings.node;
        let pod = |ds: &str, rev: &str| {
            let ns = self
                .store
                .daemonsets
                .get(ds)
                .map_or("default", |r| r.daemonset.metadata.namespace.as_str());
            (format!("{ns}_{ds}"), rev.to_string())
        };
        let mut keep: std::collections::BTreeSet<(String, String)> =
            instances.iter().map(|i| pod(&i.daemonset, &i.revision)).collect();
        for (name, record) in &self.store.daemonsets {
            keep.insert(pod(name, &record.granted_revision(node).hash));
        }
        podsetup::cleanup(&self.ctx.settings.pod_root, &keep);
    }

    /// Removes instances of DaemonSets no actor owns: deleted while the agent was down, or
    /// left by a crash. Skipped while the store copy is empty, since a fresh node has not yet
    /// learnt what should run and must not remove what it ran.
    fn sweep_orphans(&mut self, ctx: &mut Context<Self>) {
        if self.store.version == 0 {
            return;
        }
        let shared = self.ctx.clone();
        let list = async move { shared.instances.list().await };
        ctx.spawn(list.into_actor(self).map(|listed, act, ctx| {
            let instances = match listed {
                Ok(i) => i,
                Err(e) => {
                    warn!(error = %e, "cannot list instances for the orphan sweep");
                    return;
                }
            };
            act.sweep_pod_dirs(&instances);
            let orphans: Vec<String> = instances
                .iter()
                .filter(|i| !act.actors.contains_key(&i.daemonset))
                .map(|i| {
                    info!(id = %i.id, daemonset = %i.daemonset, "removing an orphan instance");
                    i.id.clone()
                })
                .collect();
            if orphans.is_empty() {
                return;
            }
            let shared = act.ctx.clone();
            let runtime = act.ctx.runtime.clone();
            let grace = act.ctx.settings.orphan_grace;
            ctx.spawn(
                async move {
                    shared.instances.invalidate();
                    for id in orphans {
                        let result = match runtime.stop(&id, grace).await {
                            Ok(()) | Err(RuntimeError::NotFound { .. }) => runtime.remove(&id).await,
                            Err(e) => Err(e),
                        };
                        match result {
                            Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                            Err(e) => warn!(%id, error = %e, "cannot remove an orphan instance; will retry"),
                        }
                    }
                    shared.instances.invalidate();
                }
                .into_actor(act),
            );
        }));
    }
}

impl Actor for NodeAgent {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(node = %self.ctx.settings.node, runtime = self.ctx.runtime.kind().as_str(), "node agent started");
        let rx = self.store_rx.clone();
        let changes = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            let store = rx.borrow_and_update().clone();
            Some((StoreChanged(store), rx))
        });
        ctx.add_stream(changes);
        let leaving = self.ctx.leaving.subscribe();
        let leaving = futures_util::stream::unfold(leaving, |mut rx| async move {
            rx.changed().await.ok()?;
            let value = *rx.borrow_and_update();
            Some((LeavingChanged(value), rx))
        });
        ctx.add_stream(leaving);
        self.leaving = *self.ctx.leaving.borrow();
        self.converge(ctx);
        self.sweep_orphans(ctx);
        ctx.run_interval(self.ctx.settings.resync, |act, ctx| {
            act.converge(ctx);
            act.sweep_orphans(ctx);
        });
    }
}

impl StreamHandler<StoreChanged> for NodeAgent {
    fn handle(&mut self, StoreChanged(store): StoreChanged, ctx: &mut Context<Self>) {
        self.store = store;
        self.converge(ctx);
    }

    /// The store copy lives as long as the node; if it ends, the periodic pass carries on.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl StreamHandler<LeavingChanged> for NodeAgent {
    fn handle(&mut self, LeavingChanged(leaving): LeavingChanged, ctx: &mut Context<Self>) {
        if leaving {
            info!("leaving the cluster: stopping every instance on this node");
        }
        self.leaving = leaving;
        self.converge(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<Retired> for NodeAgent {
    type Result = ();

    fn handle(&mut self, msg: Retired, ctx: &mut Context<Self>) {
        self.actors.remove(&msg.daemonset);
        self.retiring.remove(&msg.daemonset);
        // It may be wanted again already (a label flapped back).
        self.converge(ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ds(tolerations: &str) -> crate::spec::DaemonSet {
        let yaml = format!(
            "apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: x}}
spec:
  selector: {{matchLabels: {{app: x}}}}
  template:
    metadata: {{labels: {{app: x}}}}
    spec:
      tolerations: {tolerations}
      containers: [{{name: main, image: 'x:1'}}]
"
        );
        crate::spec::parse(yaml.as_bytes(), "t.yaml")
            .remove(0)
            .into_valid()
            .expect("valid")
            .into_daemonset()
            .unwrap()
    }

    #[test]
    fn taints_keep_evict_or_delay_as_kubernetes_does() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let later = |s| t0 + Duration::from_secs(s);
        let no_schedule: Taint = "gpu=yes:NoSchedule".parse().unwrap();
        let no_execute: Taint = "maint=now:NoExecute".parse().unwrap();
        let node = |t: &Taint| NodeInfo::local("n1").with_taint(t.clone());
        let seen = BTreeMap::from([(no_execute.clone(), t0)]);
        let tolerate_30s = "[{key: maint, operator: Exists, effect: NoExecute, tolerationSeconds: 30}]";
        let cases = [
            ("no taint: runs", ds("[]"), NodeInfo::local("n1"), false, t0, true),
            (
                "new NoSchedule: no new instance",
                ds("[]"),
                node(&no_schedule),
                false,
                t0,
                false,
            ),
            (
                "NoSchedule on a running one: kept",
                ds("[]"),
                node(&no_schedule),
                true,
                t0,
                true,
            ),
            (
                "untolerated NoExecute: evicted",
                ds("[]"),
                node(&no_execute),
                true,
                t0,
                false,
            ),
            (
                "tolerated for 30s: still runs at 29s",
                ds(tolerate_30s),
                node(&no_execute),
                true,
                later(29),
                true,
            ),
            (
                "tolerated for 30s: evicted at 30s",
                ds(tolerate_30s),
                node(&no_execute),
                true,
                later(30),
                false,
            ),
        ];
        for (name, ds, node, running, now, want) in cases {
            assert_eq!(runs_here(&ds, &node, running, &seen, now), want, "{name}");
        }
    }
}
