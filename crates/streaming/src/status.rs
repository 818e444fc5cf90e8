//! The final status a remote command reports on its error stream.

use crate::backend::Outcome;

/// v4 clients read a Kubernetes `Status` as JSON; the exit code of a
/// failed command is the `ExitCode` cause of a `NonZeroExitCode` failure.
pub fn v4_status(outcome: &Outcome, command: &[String]) -> Vec<u8> {
    let status = match outcome {
        Outcome::Success => serde_json::json!({ "metadata": {}, "status": "Success" }),
        Outcome::ExitCode(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": { "causes": [ { "reason": "ExitCode", "message": code.to_string() } ] },
        }),
        Outcome::Failed(message) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "details": { "causes": [ { "message": message } ] },
            "code": 500,
        }),
    };
    serde_json::to_vec(&status).expect("JSON values serialise")
}

/// Older protocols carry only the message of a failure; success is silence.
pub fn v1_status(outcome: &Outcome, command: &[String]) -> Vec<u8> {
    match outcome {
        Outcome::Success => Vec::new(),
        Outcome::ExitCode(code) => format!(
            "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
        )
        .into_bytes(),
        Outcome::Failed(message) => message.clone().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_travel_as_status_causes() {
        let status: serde_json::Value =
            serde_json::from_slice(&v4_status(&Outcome::ExitCode(3), &["sh".into()])).unwrap();
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        let ok: serde_json::Value =
            serde_json::from_slice(&v4_status(&Outcome::Success, &[])).unwrap();
        assert_eq!(ok, serde_json::json!({"metadata": {}, "status": "Success"}));
        assert!(v1_status(&Outcome::Success, &[]).is_empty());
        assert!(
            String::from_utf8(v1_status(&Outcome::ExitCode(2), &[]))
                .unwrap()
                .contains("exit code 2")
        );
    }
}
