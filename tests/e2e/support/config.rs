//! Config builders: the LiteLLM `config.yaml` shape (`model_list`, `litellm_params`,
//! `model_info`, `router_settings`, `general_settings`, `litellm_settings`, and llmgate's own
//! `llmgate:` section) as typed structs, serialised to YAML. A test states what it
//! configures; tests of config parsing itself keep their raw YAML text.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_yaml_ng::Value;

/// Keys a struct does not name, kept in order.
pub type Extra = BTreeMap<String, Value>;

/// Any serialisable value as YAML.
fn yaml(v: impl Serialize) -> Value {
    serde_yaml_ng::to_value(v).unwrap()
}

/// A whole `config.yaml`.
#[derive(Debug, Default, Serialize)]
pub struct Config {
    /// Deployments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_list: Vec<Deployment>,
    /// LiteLLM router settings.
    #[serde(skip_serializing_if = "Extra::is_empty")]
    pub router_settings: Extra,
    /// LiteLLM library settings.
    #[serde(skip_serializing_if = "Extra::is_empty")]
    pub litellm_settings: Extra,
    /// Proxy settings.
    #[serde(skip_serializing_if = "GeneralSettings::is_empty")]
    pub general_settings: GeneralSettings,
    /// llmgate's own section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llmgate: Option<Llmgate>,
}

/// One `model_list` entry.
#[derive(Debug, Serialize)]
pub struct Deployment {
    /// The name clients ask for.
    pub model_name: String,
    /// Where and how to call it.
    pub litellm_params: Params,
    /// Metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_info: Option<ModelInfo>,
}

/// A deployment's `litellm_params`.
#[derive(Debug, Default, Serialize)]
pub struct Params {
    /// `provider/model`.
    pub model: String,
    /// The upstream's base URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// The upstream key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// USD per input token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_cost_per_token: Option<f64>,
    /// USD per output token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_cost_per_token: Option<f64>,
    /// Every other param.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A deployment's `model_info`.
#[derive(Debug, Default, Serialize)]
pub struct ModelInfo {
    /// The deployment id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// USD per input token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_cost_per_token: Option<f64>,
    /// USD per output token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_cost_per_token: Option<f64>,
    /// The deployment's output cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `general_settings`.
#[derive(Debug, Default, Serialize)]
pub struct GeneralSettings {
    /// The master key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<String>,
    /// Every other setting.
    #[serde(flatten)]
    pub extra: Extra,
}

impl GeneralSettings {
    fn is_empty(&self) -> bool {
        self.master_key.is_none() && self.extra.is_empty()
    }
}

/// The `llmgate:` section.
#[derive(Debug, Default, Serialize)]
pub struct Llmgate {
    /// `llmgate.routing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    /// `reserve` or `strict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_admission: Option<String>,
    /// Every other setting.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `llmgate.routing`.
#[derive(Debug, Default, Serialize)]
pub struct Routing {
    /// The policy of groups that name none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_policy: Option<String>,
    /// Every other setting.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Deployment {
    /// A deployment of `model` (`provider/model`, as LiteLLM writes it) named `name`.
    pub fn new(name: &str, model: &str) -> Self {
        Self {
            model_name: name.to_string(),
            litellm_params: Params {
                model: model.to_string(),
                ..Params::default()
            },
            model_info: None,
        }
    }

    /// An OpenAI-compatible deployment of the mock's `model` at `{mock_url}/v1`, with the
    /// mock's upstream key.
    pub fn openai(name: &str, model: &str, mock_url: &str) -> Self {
        Self::new(name, &format!("openai/{model}"))
            .api_base(&format!("{mock_url}/v1"))
            .api_key(super::mock::UPSTREAM_KEY)
    }

    /// `litellm_params.api_base`.
    pub fn api_base(mut self, url: &str) -> Self {
        self.litellm_params.api_base = Some(url.to_string());
        self
    }

    /// `litellm_params.api_key`.
    pub fn api_key(mut self, key: &str) -> Self {
        self.litellm_params.api_key = Some(key.to_string());
        self
    }

    /// Prices in `litellm_params`, USD per input and output token.
    pub fn prices(mut self, input: f64, output: f64) -> Self {
        self.litellm_params.input_cost_per_token = Some(input);
        self.litellm_params.output_cost_per_token = Some(output);
        self
    }

    /// Any other `litellm_params` entry.
    pub fn param(mut self, key: &str, value: impl Serialize) -> Self {
        self.litellm_params
            .extra
            .insert(key.to_string(), yaml(value));
        self
    }

    fn info_mut(&mut self) -> &mut ModelInfo {
        self.model_info.get_or_insert_with(ModelInfo::default)
    }

    /// `model_info.id`.
    pub fn id(mut self, id: &str) -> Self {
        self.info_mut().id = Some(id.to_string());
        self
    }

    /// Prices in `model_info`, USD per input and output token.
    pub fn info_prices(mut self, input: f64, output: f64) -> Self {
        let info = self.info_mut();
        info.input_cost_per_token = Some(input);
        info.output_cost_per_token = Some(output);
        self
    }

    /// `model_info.max_input_tokens`.
    pub fn max_input_tokens(self, n: u64) -> Self {
        self.info("max_input_tokens", n)
    }

    /// Any other `model_info` entry.
    pub fn info(mut self, key: &str, value: impl Serialize) -> Self {
        self.info_mut().extra.insert(key.to_string(), yaml(value));
        self
    }

    /// `model_info.max_output_tokens`.
    pub fn max_output_tokens(mut self, n: u64) -> Self {
        self.info_mut().max_output_tokens = Some(n);
        self
    }
}

impl Config {
    /// An empty config.
    pub fn new() -> Self {
        Self::default()
    }

    /// One OpenAI-compatible deployment of the mock per `(model_name, upstream model)`.
    pub fn openai(mock_url: &str, groups: &[(&str, &str)]) -> Self {
        groups.iter().fold(Self::new(), |c, (name, model)| {
            c.deployment(Deployment::openai(name, model, mock_url))
        })
    }

    /// Add a deployment.
    pub fn deployment(mut self, d: Deployment) -> Self {
        self.model_list.push(d);
        self
    }

    /// `general_settings.master_key`.
    pub fn master_key(mut self, key: &str) -> Self {
        self.general_settings.master_key = Some(key.to_string());
        self
    }

    /// Any `router_settings` entry.
    pub fn router_setting(mut self, key: &str, value: impl Serialize) -> Self {
        self.router_settings.insert(key.to_string(), yaml(value));
        self
    }

    fn llmgate_mut(&mut self) -> &mut Llmgate {
        self.llmgate.get_or_insert_with(Llmgate::default)
    }

    /// `llmgate.routing.default_policy`.
    pub fn default_policy(mut self, policy: &str) -> Self {
        self.llmgate_mut()
            .routing
            .get_or_insert_with(Routing::default)
            .default_policy = Some(policy.to_string());
        self
    }

    /// `llmgate.budget_admission`.
    pub fn budget_admission(mut self, rule: &str) -> Self {
        self.llmgate_mut().budget_admission = Some(rule.to_string());
        self
    }

    /// Any other `llmgate.routing` setting.
    pub fn routing_setting(mut self, key: &str, value: impl Serialize) -> Self {
        self.llmgate_mut()
            .routing
            .get_or_insert_with(Routing::default)
            .extra
            .insert(key.to_string(), yaml(value));
        self
    }

    /// Any other `llmgate:` setting.
    pub fn llmgate_setting(mut self, key: &str, value: impl Serialize) -> Self {
        self.llmgate_mut()
            .extra
            .insert(key.to_string(), yaml(value));
        self
    }

    /// The config as YAML text.
    pub fn yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap()
    }
}

/// A config with one OpenAI-compatible deployment per `(model_name, upstream model)`.
pub fn openai_config(mock_url: &str, groups: &[(&str, &str)]) -> String {
    Config::openai(mock_url, groups).yaml()
}
