"""The model and coder of coding 3 (context), as one plain function (spec/kpal.md §12).

``code`` runs unchanged under numba (``kpal.coding._context_fast`` compiles
it) and as plain Python; both write the same bytes. It is one function that
calls no other Python function, because a compiled function may only call
compiled ones, and the numbers it uses are spec §12 names, written once here.
"""

from __future__ import annotations

#: Hashed context models (spec §12.4), plus one directly indexed model.
N_HASHED = 5
N_INPUTS = N_HASHED + 1
#: Entries of the directly indexed model: 1024 flag contexts + 2048 literal contexts.
DIRECT_SIZE = 3072
#: Bias input of the mixer.
BIAS = 256
#: Weights start at 0.25 (16.16 fixed point) and stay within +-64.
WEIGHT_INIT = 1 << 14
WEIGHT_LIMIT = 1 << 22
#: Counters start at probability one half, seen 0 times.
COUNTER_INIT = 32768 << 16
#: Multipliers of the 32-bit multiplicative hash (spec §12.4): 2**32 / phi, and an odd
#: constant for the group.
HASH_CONTEXT = 0x9E3779B1
HASH_GROUP = 0x85EBCA77

# outcome codes of ``code``
TRUNCATED = -1
BAD_INDEX = -2
NOT_FINISHED = -3
OUT_OF_ROOM = -4


def code(labels, width, height, k, b, table_bits, count_limit, mixer_shift, apm_rate, data,
         decoding, squash, stretch, rate, counters, weights, apm, scratch):
    """Encode ``labels`` into ``data``, or decode ``data`` into ``labels``.

    ``labels`` holds the height*width coded indices row by row (filled when
    decoding). ``counters``, ``weights`` and ``apm`` hold the model's initial
    state (see ``kpal.coding.context``) and are updated in place; ``scratch``
    holds at least 4 * N_INPUTS + 1 integers. Returns the number of bytes
    written (encoding), 0 (decoding, success) or a negative outcome code.
    Every argument may be a numpy array or a Python list.
    """
    mask32 = 0xFFFFFFFF
    size = 1 << table_bits
    block_shift = 32 - (table_bits - 4)
    inputs_per_set = N_INPUTS + 1
    direct_base = N_HASHED * size
    ctx = 0  # scratch[0:N_HASHED]: contexts; then bases, indices, inputs
    base = N_INPUTS
    index = 2 * N_INPUTS
    inputs = 3 * N_INPUTS
    scratch[inputs + N_INPUTS] = BIAS
    x1 = 0
    x2 = mask32
    x = 0
    pos = 0
    n_data = len(data)
    if decoding:
        if n_data < 4:
            return TRUNCATED
        for _ in range(4):
            x = (x << 8) | data[pos]
            pos += 1
    for i in range(height):
        row = i * width
        for j in range(width):
            if j > 0:
                left = labels[row + j - 1]
            elif i > 0:
                left = labels[row - width + j]
            else:
                left = 0
            above = labels[row - width + j] if i > 0 else left
            above_left = labels[row - width + j - 1] if i > 0 and j > 0 else above
            above_right = labels[row - width + j + 1] if i > 0 and j + 1 < width else above
            right2 = labels[row - width + j + 2] if i > 0 and j + 2 < width else above_right
            left2 = labels[row + j - 2] if j > 1 else left
            above2 = labels[row - 2 * width + j] if i > 1 else above
            left = int(left)
            above = int(above)
            above_left = int(above_left)
            above_right = int(above_right)
            right2 = int(right2)
            pattern = (int(left == above) | (int(above == above_left) << 1)
                       | (int(left == above_left) << 2) | (int(above == above_right) << 3)
                       | (int(left == above_right) << 4) | (int(left == left2) << 5)
                       | (int(above == above2) << 6) | (int(above_right == right2) << 7))
            scratch[ctx] = left
            scratch[ctx + 1] = above
            scratch[ctx + 2] = left | (above << 8)
            scratch[ctx + 3] = left | (above << 8) | (above_right << 16) | (above_left << 24)
            scratch[ctx + 4] = above | (above_right << 8) | (right2 << 16) | (pattern << 24)
            symbol = 0 if decoding else int(labels[row + j])
            flag = 0  # 0, 1, 2: the candidates left, above, above-right; 3: literal
            node = 1
            depth = 0
            group = -1
            candidate = left
            while True:
                if flag < 3:
                    candidate = left if flag == 0 else (above if flag == 1 else above_right)
                    if (flag >= 1 and candidate == left) or (flag == 2 and candidate == above):
                        flag += 1
                        continue
                    g = 0
                    slot = flag + 1
                    u = flag
                    target = 1 if symbol == candidate else 0
                    direct = flag | (pattern << 2)
                else:
                    if depth < 4:
                        g = 1
                        slot = node
                    else:
                        g = node >> (depth - 4)
                        slot = (node & ((1 << (depth - 4)) - 1)) | (1 << (depth - 4))
                    u = 2 + node
                    shift = b - 1 - depth
                    target = (symbol >> shift) & 1
                    prefix = node - (1 << depth)
                    direct = 1024 + (depth
                                     | (int((left >> (shift + 1)) == prefix) << 3)
                                     | (((left >> shift) & 1) << 4)
                                     | (int((above >> (shift + 1)) == prefix) << 5)
                                     | (((above >> shift) & 1) << 6)
                                     | (int((above_right >> (shift + 1)) == prefix) << 7)
                                     | (((above_right >> shift) & 1) << 8)
                                     | (int((above_left >> (shift + 1)) == prefix) << 9)
                                     | (((above_left >> shift) & 1) << 10))
                if g != group:
                    group = g
                    for m in range(N_HASHED):
                        h = (scratch[ctx + m] * HASH_CONTEXT + g * HASH_GROUP) & mask32
                        scratch[base + m] = m * size + ((h >> block_shift) << 4)
                for m in range(N_HASHED):
                    scratch[index + m] = scratch[base + m] + slot
                scratch[index + N_HASHED] = direct_base + direct
                w0 = (u * 4 + ((pattern & 1) | ((pattern >> 2) & 2))) * inputs_per_set
                dot = 0
                for m in range(N_INPUTS + 1):
                    if m < N_INPUTS:
                        scratch[inputs + m] = stretch[counters[scratch[index + m]] >> 20]
                    dot += weights[w0 + m] * scratch[inputs + m]
                dot >>= 16
                dot = min(2047, max(-2047, dot))
                p_mix = squash[dot + 2047]
                s = stretch[p_mix] + 2048
                a0 = u * 33 + (s >> 7)
                wt = s & 127
                p_apm = (apm[a0] * (128 - wt) + apm[a0 + 1] * wt) >> 11
                p = min(4095, max(1, (p_mix + 3 * p_apm) >> 2))
                xmid = x1 + ((x2 - x1) >> 12) * p + ((((x2 - x1) & 0xFFF) * p) >> 12)
                if decoding:
                    bit = 1 if x <= xmid else 0
                else:
                    bit = target
                if bit:
                    x2 = xmid
                else:
                    x1 = xmid + 1
                while ((x1 ^ x2) & 0xFF000000) == 0:
                    if decoding:
                        if pos >= n_data:
                            return TRUNCATED
                        x = ((x << 8) & mask32) | data[pos]
                    else:
                        if pos >= n_data:
                            return OUT_OF_ROOM
                        data[pos] = x2 >> 24
                    pos += 1
                    x1 = (x1 << 8) & mask32
                    x2 = ((x2 << 8) & mask32) | 255
                error = (bit << 12) - p_mix
                for m in range(N_INPUTS + 1):
                    w = weights[w0 + m] + ((scratch[inputs + m] * error) >> mixer_shift)
                    weights[w0 + m] = min(WEIGHT_LIMIT, max(-WEIGHT_LIMIT, w))
                goal = 65535 if bit else 0
                apm[a0] += (goal - apm[a0]) >> apm_rate
                apm[a0 + 1] += (goal - apm[a0 + 1]) >> apm_rate
                for m in range(N_INPUTS):
                    e = scratch[index + m]
                    c = counters[e]
                    n = c & 255
                    q = c >> 16
                    q += ((goal - q) * rate[n]) >> 16
                    if n < count_limit:
                        n += 1
                    counters[e] = (q << 16) | n
                if flag < 3:
                    if bit:
                        symbol = candidate
                        break
                    flag += 1
                else:
                    node = 2 * node + bit
                    depth += 1
                    if depth == b:
                        break
            if flag == 3:
                symbol = node - (1 << b)
                if decoding and (symbol >= k or symbol == left or symbol == above
                                 or symbol == above_right):
                    return BAD_INDEX
            if decoding:
                labels[row + j] = symbol
    if decoding:
        return 0 if pos == n_data and x == x1 else NOT_FINISHED
    for _ in range(4):
        if pos >= n_data:
            return OUT_OF_ROOM
        data[pos] = (x1 >> 24) & 255
        pos += 1
        x1 = (x1 << 8) & mask32
    return pos
