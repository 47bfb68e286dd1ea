//! Environments: per-rollout state behind a set of tools (TRL's
//! `environment_factory`), and the tools a trainer offers.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::tool::{Tool, ToolResultText};
use crate::dataset::Row;
use crate::{Error, Result};

/// The state one rollout's tool calls act on.
///
/// A [`Tools`] with an environment factory makes one environment per
/// completion, calls [`Environment::reset`] with the completion's dataset
/// row before generating, [`Environment::call`] for each of the model's
/// tool calls in order, and [`Environment::reward`] once the completion
/// has ended (handed to the reward functions as
/// [`crate::rewards::Completion::environment_reward`]).
pub trait Environment: Send {
    /// The tools this environment answers, as `(name, description,
    /// JSON schema of the arguments)`: rendered into the prompt.
    fn tools(&self) -> Vec<Tool>;

    /// Prepares the environment for a rollout of `row`; an error message
    /// fails the rollout.
    fn reset(&mut self, row: &Row) -> std::result::Result<(), String> {
        let _ = row;
        Ok(())
    }

    /// Runs the tool `name` on `arguments`: its result text, or an error
    /// message the model reads instead. The default runs the function of
    /// the tool of that name from [`Environment::tools`].
    fn call(&mut self, name: &str, arguments: &Value) -> ToolResultText {
        match self.tools().iter().find(|t| t.name() == name) {
            Some(tool) => tool.call(arguments),
            None => Err(format!("Tool {name} not found.")),
        }
    }

    /// The rollout's reward from the environment, if it gives one.
    fn reward(&self) -> Option<f64> {
        None
    }
}

/// Makes a fresh environment for each rollout.
pub type EnvironmentFactory = Arc<dyn Fn() -> Box<dyn Environment> + Send + Sync>;

/// The tools a trainer offers: stateless tools, and optionally a factory of
/// environments whose tools come after them.
#[derive(Clone, Default)]
pub struct Tools {
    tools: Vec<Tool>,
    environment: Option<EnvironmentFactory>,
}

impl fmt::Debug for Tools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tools")
            .field("tools", &self.tools)
            .field("environment", &self.environment.is_some())
            .finish()
    }
}

impl Tools {
    /// Stateless tools (names must be distinct and non-empty).
    pub fn new(tools: Vec<Tool>) -> Result<Self> {
        let out = Tools {
            tools,
            environment: None,
        };
        out.check_names(&out.tools)?;
        Ok(out)
    }

    /// Adds an environment factory; its environments' tools must not reuse
    /// a name of the stateless tools (checked on one environment made now).
    pub fn with_environment(mut self, factory: EnvironmentFactory) -> Result<Self> {
        let probe = factory();
        let mut all = self.tools.clone();
        all.extend(probe.tools());
        self.check_names(&all)?;
        self.environment = Some(factory);
        Ok(self)
    }

    fn check_names(&self, tools: &[Tool]) -> Result<()> {
        let mut seen = BTreeSet::new();
        for t in tools {
            if t.name().is_empty() {
                return Err(Error::InvalidTool {
                    name: String::new(),
                    message: "a tool needs a name".into(),
                });
            }
            if !seen.insert(t.name()) {
                return Err(Error::InvalidTool {
                    name: t.name().to_string(),
                    message: "two tools have this name".into(),
                });
            }
        }
        Ok(())
    }

    /// Whether there is no tool and no environment.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.environment.is_none()
    }

    /// A fresh rollout context: the stateless tools plus a new environment.
    pub fn instance(&self) -> ToolInstance {
        ToolInstance {
            tools: self.tools.clone(),
            environment: self.environment.as_ref().map(|f| f()),
        }
    }

    /// The schemas of every tool (the environment's from a fresh instance),
    /// for the chat template's `tools`.
    pub fn schemas(&self) -> Vec<Value> {
        self.instance().schemas()
    }
}

/// The tools of one rollout: stateless tools and its own environment.
pub struct ToolInstance {
    tools: Vec<Tool>,
    environment: Option<Box<dyn Environment>>,
}

impl fmt::Debug for ToolInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolInstance")
            .field("tools", &self.tools)
            .field("environment", &self.environment.is_some())
            .finish()
    }
}

impl ToolInstance {
    /// Every tool's schema.
    pub fn schemas(&self) -> Vec<Value> {
        let env = self
            .environment
            .as_ref()
            .map(|e| e.tools())
            .unwrap_or_default();
        self.tools.iter().chain(&env).map(Tool::schema).collect()
    }

    /// Resets the environment for `row`.
    pub fn reset(&mut self, row: &Row) -> std::result::Result<(), String> {
        match &mut self.environment {
            Some(e) => e.reset(row),
            None => Ok(()),
        }
    }

    /// Runs the tool `name`: a stateless tool, else the environment's; an
    /// unknown name is an error result. A panicking environment call
    /// becomes an error result too.
    pub fn call(&mut self, name: &str, arguments: &Value) -> ToolResultText {
        if let Some(tool) = self.tools.iter().find(|t| t.name() == name) {
            return tool.call(arguments);
        }
        match &mut self.environment {
            Some(env) => {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    env.call(name, arguments)
                }));
                outcome.unwrap_or_else(|payload| {
                    Err(format!(
                        "tool {name} panicked: {}",
                        crate::rewards::panic_message(payload.as_ref())
                    ))
                })
            }
            None => Err(format!("Tool {name} not found.")),
        }
    }

    /// The environment's reward, if any.
    pub fn reward(&self) -> Option<f64> {
        self.environment.as_ref().and_then(|e| e.reward())
    }
}
