//! Stop signals between the CRI's `Signal` enum and Docker's `StopSignal`
//! strings. Docker accepts `SIGUSR1`, `USR1` or a number and keeps what it
//! was given (or the image's); the CRI names real-time signals
//! `SIGRTMINPLUS3` and `SIGRTMAXMINUS2` where Linux says `SIGRTMIN+3`.

use cri_dockerd_api::v1::Signal;

/// Linux's first real-time signal number as glibc (and Docker) count.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// The `StopSignal` for a container config; `None` leaves the image's.
pub fn docker_stop_signal(signal: Signal) -> Option<String> {
    if signal == Signal::RuntimeDefault {
        return None;
    }
    let name = signal.as_str_name();
    Some(if let Some(n) = name.strip_prefix("SIGRTMINPLUS") {
        format!("SIGRTMIN+{n}")
    } else if let Some(n) = name.strip_prefix("SIGRTMAXMINUS") {
        format!("SIGRTMAX-{n}")
    } else {
        name.to_string()
    })
}

/// The CRI signal for Docker's `StopSignal` (SIGTERM when empty, Docker's
/// default); `RuntimeDefault` for what has no CRI name.
pub fn cri_signal(docker: &str) -> Signal {
    let docker = docker.trim();
    if docker.is_empty() {
        return Signal::Sigterm;
    }
    let name = match docker.parse::<i32>() {
        Ok(n) => match name_of_number(n) {
            Some(name) => name,
            None => return Signal::RuntimeDefault,
        },
        Err(_) => {
            let upper = docker.to_ascii_uppercase();
            if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            }
        }
    };
    let name = if let Some(n) = name.strip_prefix("SIGRTMIN+") {
        format!("SIGRTMINPLUS{n}")
    } else if let Some(n) = name.strip_prefix("SIGRTMAX-") {
        format!("SIGRTMAXMINUS{n}")
    } else {
        name
    };
    Signal::from_str_name(&name).unwrap_or(Signal::RuntimeDefault)
}

fn name_of_number(n: i32) -> Option<String> {
    if (SIGRTMIN..=SIGRTMAX).contains(&n) {
        return Some(match n {
            SIGRTMIN => "SIGRTMIN".to_string(),
            SIGRTMAX => "SIGRTMAX".to_string(),
            n if n - SIGRTMIN <= 15 => format!("SIGRTMIN+{}", n - SIGRTMIN),
            n => format!("SIGRTMAX-{}", SIGRTMAX - n),
        });
    }
    nix::sys::signal::Signal::try_from(n)
        .ok()
        .map(|s| s.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_signals_become_docker_names() {
        assert_eq!(docker_stop_signal(Signal::RuntimeDefault), None);
        assert_eq!(
            docker_stop_signal(Signal::Sigusr1).as_deref(),
            Some("SIGUSR1")
        );
        assert_eq!(
            docker_stop_signal(Signal::Sigrtminplus3).as_deref(),
            Some("SIGRTMIN+3")
        );
        assert_eq!(
            docker_stop_signal(Signal::Sigrtmaxminus2).as_deref(),
            Some("SIGRTMAX-2")
        );
    }

    #[test]
    fn docker_names_and_numbers_become_cri_signals() {
        for (docker, cri) in [
            ("", Signal::Sigterm),
            ("SIGUSR1", Signal::Sigusr1),
            ("usr2", Signal::Sigusr2),
            ("QUIT", Signal::Sigquit),
            ("9", Signal::Sigkill),
            ("15", Signal::Sigterm),
            ("SIGRTMIN+3", Signal::Sigrtminplus3),
            ("37", Signal::Sigrtminplus3),
            ("SIGRTMAX-1", Signal::Sigrtmaxminus1),
            ("64", Signal::Sigrtmax),
            ("SIGNOPE", Signal::RuntimeDefault),
            ("200", Signal::RuntimeDefault),
        ] {
            assert_eq!(cri_signal(docker), cri, "{docker:?}");
        }
        // Every named signal survives the round trip.
        for n in 1..=65 {
            let signal = Signal::try_from(n).unwrap();
            assert_eq!(
                cri_signal(&docker_stop_signal(signal).unwrap()),
                signal,
                "{signal:?}"
            );
        }
    }
}
