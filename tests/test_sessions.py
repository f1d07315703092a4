"""Offers of one session never cross (the pooled late viewer of issue 15 got no picture):
a session offered again fails the first offer at once and ignores its late answer, and a
receiver worker makes one offer per viewer and link, however peer-joined and the link's
connection interleave."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiortc import RTCPeerConnection

from server.receiver_worker import ReceiverWorker
from server.sessions import SessionRouter


class _Wire:
    """The signalling client of a router: keeps what it sends, feeds what it is given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.peers: dict[str, dict] = {}

    async def signal(self, to: str, data: dict) -> None:
        self.sent.append((to, data))

    async def messages(self):  # noqa: ANN201
        while (msg := await self.inbox.get()) is not None:
            yield msg


def test_a_session_offered_again_takes_only_its_own_answer() -> None:
    async def main() -> None:
        wire = _Wire()
        router = SessionRouter(wire)  # type: ignore[arg-type]
        loop_task = asyncio.ensure_future(router.run())
        answerer = RTCPeerConnection()
        first, second = RTCPeerConnection(), RTCPeerConnection()
        for pc in (first, second):
            pc.createDataChannel("x")
        try:
            t1 = asyncio.ensure_future(router.offer("v", "view:a", first))
            while len(wire.sent) < 1:
                await asyncio.sleep(0.01)
            t2 = asyncio.ensure_future(router.offer("v", "view:a", second))
            while len(wire.sent) < 2:
                await asyncio.sleep(0.01)
            (_, offer1), (_, offer2) = wire.sent
            assert offer1["offer"] != offer2["offer"]
            # The first caller hears at once, not after the 20 s answer timeout.
            try:
                await asyncio.wait_for(t1, 2)
                raise AssertionError("the superseded offer succeeded")
            except ConnectionError:
                pass
            from server.transport import make_answer

            answer1 = await make_answer(answerer, offer1)
            await answerer.close()
            answerer2 = RTCPeerConnection()
            answer2 = await make_answer(answerer2, offer2)
            # The first answer comes late: it is not applied to the second connection.
            wire.inbox.put_nowait({"type": "signal", "from": "v", "data": {
                "session": "view:a", "offer": offer1["offer"], **answer1}})
            await asyncio.sleep(0.2)
            assert not t2.done() and second.remoteDescription is None
            wire.inbox.put_nowait({"type": "signal", "from": "v", "data": {
                "session": "view:a", "offer": offer2["offer"], **answer2}})
            await asyncio.wait_for(t2, 5)
            assert second.remoteDescription.sdp == answer2["sdp"]
            await answerer2.close()
        finally:
            wire.inbox.put_nowait(None)
            await loop_task
            for pc in (first, second):
                await pc.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_an_answerer_echoes_the_offer_number() -> None:
    async def main() -> None:
        wire = _Wire()
        router = SessionRouter(wire)  # type: ignore[arg-type]
        answering = RTCPeerConnection()

        async def on_offer(peer: str, session: str, data: dict) -> RTCPeerConnection:
            return answering

        router.on_offer = on_offer
        offerer = RTCPeerConnection()
        offerer.createDataChannel("x")
        from server.transport import make_offer

        offer = await make_offer(offerer)
        loop_task = asyncio.ensure_future(router.run())
        wire.inbox.put_nowait({"type": "signal", "from": "w", "data": {
            "session": "view:a", "offer": 7, **offer}})
        while not wire.sent:
            await asyncio.sleep(0.01)
        wire.inbox.put_nowait(None)
        await loop_task
        (to, answer), = wire.sent
        assert to == "w" and answer["kind"] == "answer" and answer["offer"] == 7
        await offerer.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_viewer_joining_while_the_link_connects_is_offered_once() -> None:
    async def main() -> list[str]:
        wire = _Wire()
        worker = ReceiverWorker(wire, self_test_ms=1.0)  # type: ignore[arg-type]
        calls: list[str] = []

        async def offer_once(viewer: str, link: SimpleNamespace) -> None:
            calls.append(viewer)
            link.viewers[viewer] = (object(), None, None)
            await asyncio.sleep(0.2)  # the answer's round trip

        worker._offer_view_once = offer_once  # type: ignore[method-assign]
        link = SimpleNamespace(pc=SimpleNamespace(connectionState="connected"), viewers={},
                               offering={}, views_open=False, tasks=[], key="s/link:s")
        worker.links[link.key] = link  # type: ignore[assignment]
        connected = asyncio.ensure_future(worker._offer_views_when_connected(link))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)  # in the link's wait for its audio track
        await worker._on_peer_joined({"type": "peer-joined", "peer": "late", "role": "viewer"})
        await connected
        # Joining once the views are open: offered by peer-joined, once.
        await worker._on_peer_joined({"type": "peer-joined", "peer": "later", "role": "viewer"})
        # The audio track asks again while that offer is in flight: once more, after it.
        await asyncio.sleep(0.05)
        await worker.offer_view("later", link)  # type: ignore[arg-type]
        await asyncio.gather(*link.tasks)
        return calls

    calls = asyncio.run(asyncio.wait_for(main(), 30))
    assert calls == ["late", "later", "later"], calls


def test_closing_an_old_connection_leaves_a_newer_offer_of_the_session_alone() -> None:
    """A page that joined afresh gets a new link with the same view session; the old link
    ending afterwards must not close (or say bye to) the new link's view."""
    async def main() -> None:
        wire = _Wire()
        router = SessionRouter(wire)  # type: ignore[arg-type]
        old, new = RTCPeerConnection(), RTCPeerConnection()
        try:
            router.pcs[("v", "view:a")] = new  # the newer offer took the session
            await router.close_session("v", "view:a", only=old)
            assert router.pcs[("v", "view:a")] is new and wire.sent == []
            assert new.connectionState != "closed"
            await router.close_session("v", "view:a", only=new)
            assert ("v", "view:a") not in router.pcs
            assert wire.sent == [("v", {"session": "view:a", "kind": "bye"})]
            assert new.connectionState == "closed"
        finally:
            await old.close()
            await new.close()

    asyncio.run(main())
