//! The policies in force, replaced whole when `crate::sync::policies` loads a new set.

use super::PolicySet;
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct PolicyStore {
    current: RwLock<Arc<PolicySet>>,
}

impl PolicyStore {
    pub fn new(set: PolicySet) -> Self {
        PolicyStore {
            current: RwLock::new(Arc::new(set)),
        }
    }

    pub fn current(&self) -> Arc<PolicySet> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: PolicySet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}
