//! `Config` as generated samplers and `BpfBuilder::new` use it. Signatures
//! from Rezolus' `src/agent/config/mod.rs` (`Config::enabled(&self, &str) ->
//! bool`, `Config::general(&self) -> &General`) and `config/general.rs`
//! (`General::btf_path(&self) -> Option<&str>`).

use std::collections::HashMap;

pub struct Config {
    general: General,
    samplers: HashMap<String, bool>,
}

impl Config {
    pub fn load_default() -> Self {
        Self {
            general: General { btf_path: None },
            samplers: HashMap::new(),
        }
    }

    pub fn general(&self) -> &General {
        &self.general
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.samplers.get(name).copied().unwrap_or(true)
    }
}

pub struct General {
    btf_path: Option<String>,
}

impl General {
    pub fn btf_path(&self) -> Option<&str> {
        self.btf_path.as_deref()
    }
}
