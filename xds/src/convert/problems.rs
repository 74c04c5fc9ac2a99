//! Errors and warnings of one resource, collected so that all are reported at once.

use control::Diagnostics;

use crate::rejection::{Rejection, Rejections, location};
use crate::resource::ResourceType;

pub(crate) struct Problems {
    ty: ResourceType,
    resource: String,
    pub(crate) errors: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

impl Problems {
    pub fn new(ty: ResourceType, resource: &str) -> Self {
        Problems {
            ty,
            resource: resource.to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    pub fn warning(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }

    pub fn kind(&self) -> &'static str {
        self.ty.name()
    }

    /// Where this resource's diagnostics point.
    pub fn location(&self) -> control::Location {
        location(self.ty, &self.resource)
    }

    /// The value of `result`, or `None` with its error recorded under `path`.
    pub fn check<T>(&mut self, path: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(format!("{path}: {e}"));
                None
            }
        }
    }

    pub fn finish(self, rejections: &mut Rejections, warnings: &mut Diagnostics) {
        let loc = self.location();
        for e in self.errors {
            rejections.push(Rejection::of(self.ty, self.resource.clone(), e));
        }
        for w in self.warnings {
            warnings.warning(loc.clone(), w);
        }
    }
}
