//! One typed call per method of the protocol (`docs/rpc.md`).

use super::*;

impl Client {
    /// `auth`.
    pub async fn auth(&self, token: &str) -> Result<(), ClientError> {
        self.call("auth", &json!({ "token": token })).await
    }

    /// `server.info`.
    pub async fn server_info(&self) -> Result<ServerInfo, ClientError> {
        self.call("server.info", &NoParams {}).await
    }

    /// `server.stats`.
    pub async fn server_stats(&self) -> Result<ServerStats, ClientError> {
        self.call("server.stats", &NoParams {}).await
    }

    /// `worker.list`.
    pub async fn workers(&self) -> Result<Vec<WorkerSummary>, ClientError> {
        let list: WorkerList = self.call("worker.list", &NoParams {}).await?;
        Ok(list.workers)
    }

    /// `cluster.nodes`: the cluster's live nodes.
    pub async fn cluster_nodes(&self) -> Result<ClusterNodes, ClientError> {
        self.call("cluster.nodes", &NoParams {}).await
    }

    /// `cluster.locate`: the node that owns a router or a producer.
    pub async fn cluster_locate(
        &self,
        params: &ClusterLocateParams,
    ) -> Result<Located, ClientError> {
        self.call("cluster.locate", params).await
    }

    /// `router.create`.
    pub async fn create_router(&self, options: RouterOptions) -> Result<RouterInfo, ClientError> {
        self.call("router.create", &options).await
    }

    /// `router.close`.
    pub async fn close_router(&self, router: RouterId) -> Result<(), ClientError> {
        self.call("router.close", &RouterParams { router }).await
    }

    /// `router.list`.
    pub async fn routers(&self) -> Result<Vec<RouterSummary>, ClientError> {
        let list: RouterList = self.call("router.list", &NoParams {}).await?;
        Ok(list.routers)
    }

    /// `router.dump`.
    pub async fn dump_router(&self, router: RouterId) -> Result<Value, ClientError> {
        self.call("router.dump", &RouterParams { router }).await
    }

    /// `router.stats`.
    pub async fn router_stats(&self, router: RouterId) -> Result<Value, ClientError> {
        self.call("router.stats", &RouterParams { router }).await
    }

    /// `router.capabilities`.
    pub async fn router_capabilities(
        &self,
        router: RouterId,
    ) -> Result<RtpCapabilities, ClientError> {
        self.call("router.capabilities", &RouterParams { router })
            .await
    }

    /// `peer.join`.
    pub async fn join_peer(&self, router: RouterId, peer: &str) -> Result<(), ClientError> {
        let params = PeerParams {
            router,
            peer: peer.to_owned(),
        };
        self.call("peer.join", &params).await
    }

    /// `peer.leave`.
    pub async fn leave_peer(&self, router: RouterId, peer: &str) -> Result<(), ClientError> {
        let params = PeerParams {
            router,
            peer: peer.to_owned(),
        };
        self.call("peer.leave", &params).await
    }

    /// `transport.create`.
    pub async fn create_transport(
        &self,
        router: RouterId,
        kind: &str,
        peer: Option<&str>,
        options: Value,
    ) -> Result<TransportInfo, ClientError> {
        let params = TransportCreateParams {
            router,
            kind: kind.to_owned(),
            peer: peer.map(ToOwned::to_owned),
            options,
        };
        self.call("transport.create", &params).await
    }

    /// `transport.connect`.
    pub async fn connect_transport(
        &self,
        transport: TransportId,
        remote: Value,
    ) -> Result<Value, ClientError> {
        let params = TransportConnectParams { transport, remote };
        self.call("transport.connect", &params).await
    }

    /// `transport.close`.
    pub async fn close_transport(&self, transport: TransportId) -> Result<(), ClientError> {
        self.call("transport.close", &TransportParams { transport })
            .await
    }

    /// `transport.dump`.
    pub async fn dump_transport(&self, transport: TransportId) -> Result<Value, ClientError> {
        self.call("transport.dump", &TransportParams { transport })
            .await
    }

    /// `transport.stats`.
    pub async fn transport_stats(&self, transport: TransportId) -> Result<Value, ClientError> {
        self.call("transport.stats", &TransportParams { transport })
            .await
    }

    /// `producer.create`.
    pub async fn produce(
        &self,
        transport: TransportId,
        options: ProduceOptions,
    ) -> Result<ProducerInfo, ClientError> {
        let params = crate::protocol::ProducerCreateParams {
            transport,
            kind: options.kind,
            rtp_parameters: options.rtp_parameters,
            paused: options.paused,
        };
        self.call("producer.create", &params).await
    }

    /// `producer.pause`.
    pub async fn pause_producer(&self, producer: ProducerId) -> Result<(), ClientError> {
        self.call("producer.pause", &ProducerParams { producer })
            .await
    }

    /// `producer.resume`.
    pub async fn resume_producer(&self, producer: ProducerId) -> Result<(), ClientError> {
        self.call("producer.resume", &ProducerParams { producer })
            .await
    }

    /// `producer.close`.
    pub async fn close_producer(&self, producer: ProducerId) -> Result<(), ClientError> {
        self.call("producer.close", &ProducerParams { producer })
            .await
    }

    /// `producer.stats`.
    pub async fn producer_stats(&self, producer: ProducerId) -> Result<Value, ClientError> {
        self.call("producer.stats", &ProducerParams { producer })
            .await
    }

    /// `producer.dump`.
    pub async fn dump_producer(&self, producer: ProducerId) -> Result<Value, ClientError> {
        self.call("producer.dump", &ProducerParams { producer })
            .await
    }

    /// `producer.request_keyframe`.
    pub async fn request_producer_keyframe(&self, producer: ProducerId) -> Result<(), ClientError> {
        self.call("producer.request_keyframe", &ProducerParams { producer })
            .await
    }

    /// `consumer.create`.
    pub async fn consume(
        &self,
        transport: TransportId,
        options: ConsumeOptions,
    ) -> Result<ConsumerInfo, ClientError> {
        let params = crate::protocol::ConsumerCreateParams {
            transport,
            producer: options.producer,
            rtp_capabilities: options.rtp_capabilities,
            paused: options.paused,
        };
        self.call("consumer.create", &params).await
    }

    /// `consumer.pause`.
    pub async fn pause_consumer(&self, consumer: ConsumerId) -> Result<(), ClientError> {
        self.call("consumer.pause", &ConsumerParams { consumer })
            .await
    }

    /// `consumer.resume`.
    pub async fn resume_consumer(&self, consumer: ConsumerId) -> Result<(), ClientError> {
        self.call("consumer.resume", &ConsumerParams { consumer })
            .await
    }

    /// `consumer.close`.
    pub async fn close_consumer(&self, consumer: ConsumerId) -> Result<(), ClientError> {
        self.call("consumer.close", &ConsumerParams { consumer })
            .await
    }

    /// `consumer.stats`.
    pub async fn consumer_stats(&self, consumer: ConsumerId) -> Result<Value, ClientError> {
        self.call("consumer.stats", &ConsumerParams { consumer })
            .await
    }

    /// `consumer.dump`.
    pub async fn dump_consumer(&self, consumer: ConsumerId) -> Result<Value, ClientError> {
        self.call("consumer.dump", &ConsumerParams { consumer })
            .await
    }

    /// `consumer.request_keyframe`.
    pub async fn request_consumer_keyframe(&self, consumer: ConsumerId) -> Result<(), ClientError> {
        self.call("consumer.request_keyframe", &ConsumerParams { consumer })
            .await
    }

    /// `middleware.attach`.
    pub async fn attach_middleware(
        &self,
        router: RouterId,
        name: &str,
        options: Value,
    ) -> Result<(), ClientError> {
        let params = MiddlewareAttachParams {
            router,
            name: name.to_owned(),
            options,
        };
        self.call("middleware.attach", &params).await
    }

    /// `middleware.detach`.
    pub async fn detach_middleware(&self, router: RouterId, name: &str) -> Result<(), ClientError> {
        let params = MiddlewareDetachParams {
            router,
            name: name.to_owned(),
        };
        self.call("middleware.detach", &params).await
    }

    /// `transport.request`: a plugin-specific operation (`sdp` of an `rtp` transport, say).
    pub async fn transport_request(
        &self,
        transport: TransportId,
        method: &str,
        params: Value,
    ) -> Result<TransportRequestResult, ClientError> {
        let params = TransportRequestParams {
            transport,
            method: method.to_owned(),
            params,
        };
        self.call("transport.request", &params).await
    }

    /// `webrtc.publish`: applies a peer's SDP offer to its send connection (created on the
    /// first offer) and returns the server's answer with the producers it created or closed.
    pub async fn publish(
        &self,
        router: RouterId,
        peer: &str,
        offer: &str,
    ) -> Result<WebRtcPublishResult, ClientError> {
        let params = WebRtcOfferParams {
            router,
            peer: peer.to_owned(),
            sdp: offer.to_owned(),
        };
        self.call("webrtc.publish", &params).await
    }

    /// `webrtc.subscribe`: the server's SDP offer for the peer's receive connection, which
    /// carries a consumer of every track in the room unless automatic subscription is off.
    pub async fn subscribe_peer(
        &self,
        router: RouterId,
        peer: &str,
    ) -> Result<SubscribeResult, ClientError> {
        let params = PeerParams {
            router,
            peer: peer.to_owned(),
        };
        self.call("webrtc.subscribe", &params).await
    }

    /// `webrtc.answer`: the peer's SDP answer to the server's last offer on its receive
    /// connection.
    pub async fn answer(
        &self,
        router: RouterId,
        peer: &str,
        answer: &str,
    ) -> Result<(), ClientError> {
        self.answer_on(router, peer, Connection::Recv, answer).await
    }

    /// `webrtc.answer` for the server's last offer on one of the peer's connections (a
    /// `renegotiation_needed` event's `connection`).
    pub async fn answer_on(
        &self,
        router: RouterId,
        peer: &str,
        connection: Connection,
        answer: &str,
    ) -> Result<(), ClientError> {
        let params = WebRtcAnswerParams {
            router,
            peer: peer.to_owned(),
            sdp: answer.to_owned(),
            connection,
        };
        self.call("webrtc.answer", &params).await
    }

    /// `webrtc.restart_ice`: fresh ICE credentials on the peer's receive connection, in a new
    /// server offer.
    pub async fn restart_ice(
        &self,
        router: RouterId,
        peer: &str,
    ) -> Result<SubscribeResult, ClientError> {
        let params = PeerParams {
            router,
            peer: peer.to_owned(),
        };
        self.call("webrtc.restart_ice", &params).await
    }

    /// `events.subscribe`: one room's events, or (`None`) everything.
    pub async fn subscribe(&self, router: Option<RouterId>) -> Result<Subscriptions, ClientError> {
        self.call("events.subscribe", &EventsParams { router })
            .await
    }

    /// `events.unsubscribe`: one room, or (`None`) every subscription.
    pub async fn unsubscribe(
        &self,
        router: Option<RouterId>,
    ) -> Result<Subscriptions, ClientError> {
        self.call("events.unsubscribe", &EventsParams { router })
            .await
    }
}
