"""External stand-ins, not part of DOLPHIN: what the embedded profile runs in place of real infrastructure.

``hz_member`` stands in for a Hazelcast cluster (it speaks the Open Binary Client Protocol), and
``venue_sim`` for Binance USDT-M (same websocket and REST wire format). DOLPHIN's services never
import them; they only reach them over the network, exactly as they reach the real ones.
"""
