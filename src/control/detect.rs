//! Backend selection. `--backend auto` picks, in order: the system manager if it
//! knows the unit (LoadState is not `not-found`), the user manager likewise, Docker
//! if an image is configured and the daemon answers, else the process backend.
//! It never looks at files in the checkout (the original pipeline treated any
//! checkout with a Dockerfile as "docker", so its direct mode never ran).

use std::sync::Arc;

use super::docker::DockerBackend;
use super::process::ProcessBackend;
use super::systemd::{ManagerScope, SystemdBackend};
use super::{Backend, BackendChoice, ControlError, ControlOptions};

/// A connected backend plus why it was chosen (for `status` and logs).
pub struct Detected {
    pub backend: Arc<dyn Backend>,
    pub reason: String,
}

/// Connects the backend the options ask for (auto-detecting if `Auto`).
pub async fn connect(options: &ControlOptions) -> Result<Arc<dyn Backend>, ControlError> {
    Ok(detect(options).await?.backend)
}

/// Like [`connect`], also saying why that backend was chosen.
pub async fn detect(options: &ControlOptions) -> Result<Detected, ControlError> {
    let unit = options.unit_name();
    match options.backend {
        BackendChoice::Systemd => {
            let scope = if options.user {
                ManagerScope::User
            } else {
                ManagerScope::System
            };
            let backend = SystemdBackend::connect(scope, options).await?;
            Ok(Detected {
                backend: Arc::new(backend),
                reason: format!("--backend systemd ({scope:?} manager)"),
            })
        }
        BackendChoice::Docker => Ok(Detected {
            backend: Arc::new(DockerBackend::connect(options).await?),
            reason: "--backend docker".into(),
        }),
        BackendChoice::Process => Ok(Detected {
            backend: Arc::new(ProcessBackend::new(options)),
            reason: "--backend process".into(),
        }),
        BackendChoice::Auto => {
            let scopes: &[ManagerScope] = if options.user {
                &[ManagerScope::User]
            } else {
                &[ManagerScope::System, ManagerScope::User]
            };
            for scope in scopes {
                match SystemdBackend::connect(*scope, options).await {
                    Ok(backend) => match backend.load_state().await {
                        Ok(state) if state != "not-found" && !state.is_empty() => {
                            return Ok(Detected {
                                backend: Arc::new(backend),
                                reason: format!("the {scope:?} manager knows {unit} ({state})"),
                            });
                        }
                        Ok(state) => {
                            tracing::debug!(?scope, %state, "manager does not know the unit")
                        }
                        // A polkit denial on LoadUnit still means the manager is the
                        // one to use; report it rather than silently falling back.
                        Err(err @ ControlError::PermissionDenied(_)) => return Err(err),
                        Err(err) => tracing::debug!(?scope, %err, "manager unusable"),
                    },
                    Err(err) => tracing::debug!(?scope, %err, "no manager"),
                }
            }
            if options.docker_image.is_some() {
                match DockerBackend::connect(options).await {
                    Ok(backend) if backend.ping().await => {
                        return Ok(Detected {
                            backend: Arc::new(backend),
                            reason: "docker is configured and answers".into(),
                        });
                    }
                    Ok(_) => tracing::debug!("docker does not answer /_ping"),
                    Err(err) => tracing::debug!(%err, "docker unavailable"),
                }
            }
            Ok(Detected {
                backend: Arc::new(ProcessBackend::new(options)),
                reason: format!("no service manager knows {unit}; direct process"),
            })
        }
    }
}
