//! The mesh coordinator: the mutual-TLS gRPC endpoint that node agents
//! (`AgentService`, one long-lived stream each) and admins (`AdminService`,
//! for `meshctl`) talk to. It keeps the live inventory of nodes and their
//! liveness, the applied topology with its placement and rollout, each
//! node's desired container set with the operators' holds, and the bridge
//! directory. Its durable state is one redb database (`store`): the applied
//! topology, the last generation handed out per directory and container
//! set, and the holds.
//!
//! It reconciles on state, not events: anything sent can be lost, so each
//! agent reports in every heartbeat what it holds (container set and
//! directory generations, what runs) and the coordinator sends again what
//! lags ([`decide::sync`]), the directory always before the container set that
//! depends on it.
//!
//! The folders show the architecture. Decisions are pure functions of
//! state and `now`, tested without I/O, in [`decide`]: liveness,
//! placement and planning, the rollout ([`decide::rollout::step`],
//! [`decide::rollout::controller::advance`]), the directory, what to send
//! an agent ([`decide::sync`]) and holds. [`state`] holds what the
//! coordinator knows (registry, desired sets and holds, the store and
//! generation numbering, the applied topology, open agent streams), and
//! [`rpc`] (server, services, authorisation) executes what the decisions
//! return and moves messages; neither decides.
//!
//! What it must not do:
//! - trust a name in a message over the identity in the caller's
//!   certificate (an agent registers only as its certificate's node);
//! - send a generation it has not persisted first, or number one below
//!   what an agent may hold (a restart or a clock stepped back included);
//! - wait on an agent outside that agent's own stream task: sends never
//!   block (a full queue is repaired by the next heartbeat), and a command
//!   waits for its answer with a deadline;
//! - tear anything healthy down when a rollout halts, or hand a host not
//!   heard from (e.g. after a restart) a partial container set;
//! - undo an operator's hold: only `meshctl start/resume/restart` lift it;
//! - run containers or bridges itself: the agents do, from what it sends;
//! - panic on anything input or the network can make fail.
#![forbid(unsafe_code)]

pub mod config;
pub mod decide;
pub mod rpc;
pub mod state;

// The modules' paths before they moved into folders, for callers outside
// the crate and branches written against them.
pub use decide::{directory, holds, liveness, planning, rollout, sync};
pub use rpc::{admin_service, agent_service, auth, server, topology_api};
pub use state::{desired, metrics, numbering, registry, sessions, store, topology_state};

pub use rpc::server::{Coordinator, Settings};
