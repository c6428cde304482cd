//! Signals from the control core's events: `Reloaded` after every reload and
//! `StateChanged` plus `PropertiesChanged(State)` after every change of the
//! pooler's state, whichever front door (D-Bus, the console, a Unix signal)
//! caused it.

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use zbus::object_server::InterfaceRef;
use zbus::Connection;

use super::interface::Pooler1;
use super::PATH;
use crate::control::ControlEvent;

/// Emit a signal for every control event until the event channel closes.
pub async fn forward(connection: &Connection, mut events: Receiver<ControlEvent>) {
    let iface: InterfaceRef<Pooler1> = match connection.object_server().interface(PATH).await {
        Ok(iface) => iface,
        Err(e) => {
            log::warn!("D-Bus: no signals, the interface is missing: {e}");
            return;
        }
    };
    let mut warned = false;
    loop {
        let result = match events.recv().await {
            Ok(event) => emit(&iface, event).await,
            Err(RecvError::Lagged(missed)) => {
                // Missed state changes still leave the property right.
                log::debug!("D-Bus: {missed} control events missed, re-announcing State");
                iface
                    .get()
                    .await
                    .state_changed(iface.signal_emitter())
                    .await
            }
            Err(RecvError::Closed) => return,
        };
        if let Err(e) = result {
            // One warning: if the bus went away, every later signal fails too.
            if !warned {
                log::warn!("D-Bus: cannot emit signals: {e}");
                warned = true;
            } else {
                log::debug!("D-Bus: cannot emit signals: {e}");
            }
        }
    }
}

async fn emit(iface: &InterfaceRef<Pooler1>, event: ControlEvent) -> zbus::Result<()> {
    let emitter = iface.signal_emitter();
    match event {
        ControlEvent::ReloadStarted => Ok(()),
        ControlEvent::Reloaded(Ok(())) => Pooler1::reloaded(emitter, true, "").await,
        ControlEvent::Reloaded(Err(message)) => Pooler1::reloaded(emitter, false, &message).await,
        ControlEvent::StateChanged(state) => {
            Pooler1::state_changed_signal(emitter, state.as_str()).await?;
            iface.get().await.state_changed(emitter).await
        }
    }
}
