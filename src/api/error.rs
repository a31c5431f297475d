//! EC2's error answer: `Response/Errors/Error/Code,Message` and a RequestID, with a 4xx
//! status. Clients and the CLI's waiters branch on the exact code, so every refusal the
//! endpoint makes carries one of AWS's.

use super::xml::escape;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    /// A client error (400) with AWS's `code`.
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// Bad credentials or signature: 401, as EC2 answers them.
    pub fn auth(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 401,
            ..ApiError::new("AuthFailure", message)
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidParameterValue", message)
    }

    pub fn missing(param: &str) -> ApiError {
        ApiError::new(
            "MissingParameter",
            format!("The request must contain the parameter {param}"),
        )
    }

    /// `InvalidVpcID.NotFound` and friends: `The vpc ID 'vpc-1' does not exist`.
    pub fn not_found(code: &str, what: &str, id: &str) -> ApiError {
        ApiError::new(code, format!("The {what} ID '{id}' does not exist"))
    }

    pub fn dependency(message: impl Into<String>) -> ApiError {
        ApiError::new("DependencyViolation", message)
    }

    /// What the endpoint itself failed at (the kernel refused a change): 500, so the SDKs
    /// retry, with the reason and the way out in the message.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            ..ApiError::new("InternalError", message)
        }
    }

    pub fn to_xml(&self, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
            escape(&self.code),
            escape(&self.message),
            escape(request_id)
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_ec2_xml_with_the_code_and_an_escaped_message() {
        let e = ApiError::not_found("InvalidVpcID.NotFound", "vpc", "vpc-<1>");
        assert_eq!(e.status, 400);
        assert_eq!(
            e.to_xml("r-1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>The vpc ID 'vpc-&lt;1&gt;' does not exist</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
        );
        assert_eq!(ApiError::auth("no").status, 401);
    }
}
