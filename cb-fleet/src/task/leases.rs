//! The task's leases: the probe leases that cap a fleet's probes in flight
//! across replicas, and the health-check lease that lets one replica check a
//! breaker per open period. Taken, renewed and given back here; held in each
//! breaker's [`Gate`](crate::Gate).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Conn, Lost};
use crate::scripts;
use crate::server::Con;

impl Conn {
    /// Takes or renews the health-check lease of `name`'s open period, for
    /// about two check intervals (at least the probe lease's time to live).
    pub(super) async fn want_check_lease(&mut self, con: &mut Con, name: Arc<str>) -> Result<(), Lost> {
        let Some(gate) = self.member(&name, |m| Arc::clone(&m.gate)) else {
            return Ok(());
        };
        let Some(b) = self.breaker(&name) else {
            gate.check_asked.store(false, Ordering::Release);
            return Ok(());
        };
        let ttl = (b.config().health_check_interval() * 2).max(self.shared.lease_ttl);
        let k = self.shared.keys.breaker(&name);
        let granted: i64 = self
            .io(scripts::check_lease()
                .key(&k.hash)
                .key(&k.check)
                .arg(&self.shared.replica)
                .arg(ttl.as_millis() as u64)
                .invoke_async(con))
            .await?;
        gate.check_granted.store(granted == 1, Ordering::Release);
        gate.check_asked.store(false, Ordering::Release);
        Ok(())
    }

    pub(super) async fn want_lease(&mut self, con: &mut Con, name: Arc<str>) -> Result<(), Lost> {
        let Some(gate) = self.member(&name, |m| Arc::clone(&m.gate)) else {
            return Ok(());
        };
        let Some(b) = self.breaker(&name) else {
            return Ok(());
        };
        if gate.local_open().is_some() {
            return Ok(()); // its probes are its own, below the quorum
        }
        let (cap, need, cfg) = self.config_args(&name);
        let (held, id) = {
            let l = gate.leases();
            let n = l.in_use.len() + l.available.len();
            (n, format!("{}:l{}", self.shared.link.instance, fastrand::u64(..)))
        };
        if held >= cap as usize {
            return Ok(());
        }
        let k = self.shared.keys.breaker(&name);
        let (kind, version, period, ms, level, granted): (String, u64, u64, i64, i64, String) = self
            .io(scripts::acquire(self.shared.publish)
                .key(&k.hash)
                .key(&k.open)
                .key(&k.lease)
                .key(self.shared.keys.active())
                .key(self.shared.keys.names())
                .arg(&id)
                .arg(self.shared.lease_ttl.as_millis() as u64)
                .arg(cap)
                .arg(b.backoff_level())
                .arg(need)
                .arg(cfg)
                .arg(&self.shared.replica)
                .arg(&*name)
                .arg(self.shared.keys.channel())
                .arg(self.ttl_ms())
                .invoke_async(con))
            .await?;
        self.follow(&name, &(kind, version, period, ms, level));
        if granted == "1" {
            let mut l = gate.leases();
            l.period = period;
            l.available.push(id);
            gate.idle_ticks.store(0, Ordering::Relaxed);
            gate.asked.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Renews every lease held, and notes those Redis no longer holds.
    pub(super) async fn renew(&mut self, con: &mut Con) -> Result<(), Lost> {
        let ttl = self.shared.lease_ttl.as_millis() as u64;
        let gates: Vec<Arc<crate::Gate>> = self
            .shared
            .local()
            .members
            .values()
            .map(|m| Arc::clone(&m.gate))
            .collect();
        for gate in gates {
            let ids = gate.leases().ids();
            if ids.is_empty() {
                continue;
            }
            let lease = self.shared.keys.breaker(&gate.ledger.name).lease;
            let gone: Vec<String> = self
                .io(scripts::renew(self.shared.publish)
                    .key(lease)
                    .arg(ttl)
                    .arg(ids)
                    .invoke_async(con))
                .await?;
            if !gone.is_empty() {
                gate.leases().gone(&gone);
            }
        }
        Ok(())
    }

    /// Gives back unused leases.
    pub(super) async fn release(&mut self, con: &mut Con, name: &str, ids: Vec<String>) -> Result<(), Lost> {
        if ids.is_empty() {
            return Ok(());
        }
        let lease = self.shared.keys.breaker(name).lease;
        let _: i64 = self
            .io(redis::cmd("ZREM").arg(lease).arg(ids).query_async(con))
            .await?;
        Ok(())
    }
}
