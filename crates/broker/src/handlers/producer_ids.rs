//! InitProducerId: a new idempotent producer id, or a bumped epoch of one the client already has (KIP-360);
//! transactional producers are refused.

use kafka_protocol::messages::*;

use super::NO_TRANSACTIONS;
use crate::Core;
use crate::code;

impl Core {
    pub fn init_producer_id(&self, request: InitProducerIdRequest) -> InitProducerIdResponse {
        if request.transactional_id.is_some() {
            tracing::warn!("a client asked for a transactional producer: {NO_TRANSACTIONS}");
            return InitProducerIdResponse::default()
                .with_error_code(code::INVALID_REQUEST)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
        let asked = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        match self.producer_ids.grant(asked) {
            Ok(granted) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(granted.id))
                .with_producer_epoch(granted.epoch),
            Err(error) => {
                tracing::error!("cannot allocate a producer id: {error}");
                InitProducerIdResponse::default()
                    .with_error_code(code::KAFKA_STORAGE_ERROR)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        }
    }
}
