"""The simulated symbol universe: names, price levels, tick/lot sizes, sectors (deterministic per seed)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from prod.settings import PRIORITY_SYMBOLS

# Plausible reference prices (USDT) for the 50 scanner symbols.
_REF_PRICES: dict[str, float] = {
    "BTCUSDT": 64000.0, "ETHUSDT": 3200.0, "BNBUSDT": 580.0, "SOLUSDT": 145.0, "XRPUSDT": 0.52,
    "DOGEUSDT": 0.125, "ADAUSDT": 0.45, "TRXUSDT": 0.12, "AVAXUSDT": 28.0, "LINKUSDT": 14.5,
    "DOTUSDT": 6.3, "LTCUSDT": 72.0, "BCHUSDT": 380.0, "UNIUSDT": 7.8, "ATOMUSDT": 6.9,
    "ETCUSDT": 23.0, "XLMUSDT": 0.095, "FILUSDT": 4.6, "APTUSDT": 7.2, "ARBUSDT": 0.78,
    "OPUSDT": 1.65, "NEARUSDT": 5.1, "INJUSDT": 21.0, "AAVEUSDT": 95.0, "SUIUSDT": 0.92,
    "SEIUSDT": 0.38, "TIAUSDT": 6.4, "RUNEUSDT": 4.4, "ALGOUSDT": 0.15, "VETUSDT": 0.025,
    "ICPUSDT": 9.1, "HBARUSDT": 0.075, "SANDUSDT": 0.34, "MANAUSDT": 0.33, "AXSUSDT": 5.9,
    "GALAUSDT": 0.021, "APEUSDT": 0.85, "CHZUSDT": 0.072, "CRVUSDT": 0.31, "MKRUSDT": 2300.0,
    "SNXUSDT": 1.7, "COMPUSDT": 52.0, "LDOUSDT": 1.55, "DYDXUSDT": 1.35, "GRTUSDT": 0.18,
    "EGLDUSDT": 31.0, "THETAUSDT": 1.45, "FTMUSDT": 0.52, "KAVAUSDT": 0.42, "ZECUSDT": 27.0,
}

# Further real tickers (prices drawn per seed); the rest of the universe is named SIM###USDT.
_EXTRA = (
    "EOS XMR DASH XTZ ONT IOTA BAT NEO QTUM IOST ZIL KNC ZRX OMG SXP BAND RLC WAVES DEFI YFI BAL "
    "TRB SUSHI EGLD ICX STORJ BLZ HNT ENJ FLM REN KSM RSR LRC MATIC OCEAN CVC BEL CTK ALPHA ZEN "
    "SKL 1INCH AKRO ANKR LIT UNFI DODO REEF RVN SFP COTI CHR ALICE ONE LINA STMX DENT CELR HOT "
    "MTL OGN NKN 1000SHIB BAKE GTC BTCDOM TLM IOTX AUDIO C98 MASK ATA DYDX 1000XEC GALA CELO AR "
    "ARPA CTSI LPT ENS PEOPLE ROSE DUSK FLOW IMX API3 GMT WOO JASMY OP INJ STG SPELL 1000LUNC "
    "LUNA2 LDO ICP APT QNT FET FXS HOOK MAGIC T HIGH MINA ASTR PHB GMX CFX STX BNX ACH SSV CKB "
    "PERP TRU LQTY USDC ID ARB JOE AMB LEVER RDNT HFT XVS BLUR EDU SUI 1000PEPE 1000FLOKI UMA "
    "NMR MAV XVG WLD PENDLE ARKM AGLD YGG DODOX BNT OXT SEI CYBER HIFI ARK GLMR BICO STRAX LOOM "
    "BIGTIME BOND ORBS WAXP BSV RIF POLYX GAS POWR TIA CAKE MEME TOKEN ORDI STEEM ILV NTRN KAS "
    "BEAMX 1000BONK PYTH SUPER USTC ONG ETHW JTO 1000SATS AUCTION 1000RATS ACE MOVR NFP AI XAI "
    "WIF MANTA ONDO LSK ALT JUP ZETA RON DYM OM PIXEL STRK GLM PORTAL TON AXL MYRO METIS AEVO "
    "VANRY BOME ETHFI ENA W TNSR SAGA TAO OMNI REZ BB NOT TURBO IO ZK MEW LISTA ZRO RENDER BANANA"
).split()


@dataclass(frozen=True)
class SymbolSpec:
    """One perpetual contract of the universe."""

    symbol: str
    base: str
    price: float          # reference (start) price
    tick: float           # PRICE_FILTER tickSize
    price_decimals: int
    step: float           # LOT_SIZE stepSize
    qty_decimals: int
    sector: int           # index into SECTORS
    beta: float           # market-factor loading
    vol_scale: float      # idiosyncratic volatility multiplier
    notional_depth: float  # typical USDT size per book level


SECTORS = ("L1", "L2", "DEFI", "MEME", "GAMING", "AI", "INFRA", "EXCHANGE", "PRIVACY", "OTHER")


def _tick_for(price: float) -> tuple[float, int]:
    e = math.floor(math.log10(price)) - (5 if price >= 1000 else 4)
    e = max(e, -8)
    dec = max(0, -e)
    return 10.0 ** e, dec


def _step_for(price: float) -> tuple[float, int]:
    e = math.floor(math.log10(5.0 / price))
    e = min(max(e, -3), 0)
    return 10.0 ** e, max(0, -e)


def build_universe(seed: int, n_symbols: int = 560) -> tuple[SymbolSpec, ...]:
    """Return ``n_symbols`` contracts (the 50 PRIORITY_SYMBOLS first), deterministic for ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    names: list[str] = list(PRIORITY_SYMBOLS)
    seen = set(names)
    for b in _EXTRA:
        s = f"{b}USDT"
        if s not in seen:
            names.append(s)
            seen.add(s)
    k = 1
    while len(names) < n_symbols:
        s = f"SIM{k:03d}USDT"
        k += 1
        if s not in seen:
            names.append(s)
            seen.add(s)
    names = names[:n_symbols]
    specs = []
    for i, sym in enumerate(names):
        price = _REF_PRICES.get(sym) or float(10 ** rng.uniform(-2.5, 2.3))
        tick, pdec = _tick_for(price)
        price = round(round(price / tick) * tick, pdec)
        step, qdec = _step_for(price)
        if sym == "BTCUSDT":
            beta, vs, depth = 1.0, 0.7, 400_000.0
        elif sym == "ETHUSDT":
            beta, vs, depth = 1.1, 0.8, 250_000.0
        else:
            rank = i + 1
            beta = float(rng.uniform(0.8, 1.3))
            vs = float(rng.uniform(0.9, 1.7))
            depth = float(150_000.0 / math.sqrt(rank) * rng.uniform(0.6, 1.4)) + 2_000.0
        specs.append(SymbolSpec(sym, sym[:-4], price, tick, pdec, step, qdec,
                                int(rng.integers(0, len(SECTORS))), beta, vs, depth))
    return tuple(specs)
